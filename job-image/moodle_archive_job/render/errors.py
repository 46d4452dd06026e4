class RenderError(Exception):
    """An attempt report could not be turned into a PDF."""


class ReadinessTimeout(RenderError):
    """The page did not report ready within QUIZ_ARCHIVER_WAIT_FOR_READY_SIGNAL_TIMEOUT_SEC."""


class IncompletePage(RenderError):
    """A stylesheet, font or script of the page failed to load or timed out.

    The message is the cause without the render's label, e.g.
    "stylesheet https://moodle.example/theme/styles.php/boost/1/all timed out after 30 s".
    """

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


def first_line(exc: BaseException) -> str:
    """Playwright errors carry a call log after the first line; logs want only the message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
