"""Small generated images (Pillow) for report pages, attachments and theme icons."""

from __future__ import annotations

import base64
import io
from functools import lru_cache

from PIL import Image, ImageDraw

FLAG_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="16" height="16">'
    '<path d="M3 1v14h1.5V9.5h8l-2-3.5 2-3.5h-8V1z" fill="#8a8a8a"/></svg>'
)


@lru_cache(maxsize=256)
def png(
    width: int, height: int, text: str = "", colour: tuple[int, int, int] = (70, 130, 180)
) -> bytes:
    """A PNG with a coloured frame, a diagonal and an optional caption."""
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=colour, width=3)
    draw.line((0, height - 1, width - 1, 0), fill=colour, width=2)
    draw.ellipse(
        (width // 4, height // 4, width // 2, height // 2 + height // 4), outline=colour, width=2
    )
    if text:
        draw.text((8, 6), text, fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(mimetype: str, content: bytes) -> str:
    return f"data:{mimetype};base64," + base64.b64encode(content).decode("ascii")


def flag_svg_uri() -> str:
    return data_uri("image/svg+xml", FLAG_SVG.encode("utf-8"))
