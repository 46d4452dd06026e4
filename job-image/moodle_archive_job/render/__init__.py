"""Attempt report HTML to PDF with headless Chromium. The only place that imports Playwright."""

from .errors import ReadinessTimeout, RenderError
from .renderer import Renderer
from .result import RenderResult

__all__ = ["ReadinessTimeout", "RenderError", "RenderResult", "Renderer"]
