"""The one exception type fundiff raises for bad input; the CLI prints it as one line."""


class FundiffWarning(UserWarning):
    """A one-line notice about something fundiff did on the user's behalf (the CLI prints "fundiff: warning: ...")."""


def shorten(text: str, limit: int = 60) -> str:
    """``text`` for a message: its repr, cut to about ``limit`` characters (saying how long it was)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class FundiffError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it."""
