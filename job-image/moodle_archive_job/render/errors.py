class RenderError(Exception):
    """An attempt report could not be turned into a PDF."""


class ReadinessTimeout(RenderError):
    """The page did not report ready within QUIZ_ARCHIVER_WAIT_FOR_READY_SIGNAL_TIMEOUT_SEC."""


def first_line(exc: BaseException) -> str:
    """Playwright errors carry a call log after the first line; logs want only the message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
