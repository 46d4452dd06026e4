"""Attempt report HTML to PDF with headless Chromium. The only place that imports Playwright."""

from .errors import IncompletePage, ReadinessTimeout, RenderError
from .renderer import Renderer
from .result import RenderResult

__all__ = ["IncompletePage", "ReadinessTimeout", "RenderError", "RenderResult", "Renderer"]
