"""The one exception type fundiff raises for bad input; the CLI prints it as one line."""


class FundiffError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it."""
