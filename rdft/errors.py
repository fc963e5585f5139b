"""The one error type the CLI turns into a one-line message and a non-zero exit."""

import difflib


class RdftError(Exception):
    """A problem the user can fix; the message names the fix in one line."""

    exit_code = 2


class EnvBuildError(RdftError):
    """Building an environment failed; the message carries the failing command's tail."""

    exit_code = 1

    def __init__(self, message: str, tail: str = ""):
        super().__init__(message)
        self.tail = tail


def did_you_mean(name: str, options: list[str]) -> str:
    """`did you mean 'x'? ` for the closest of `options`, or an empty string."""
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean {close[0]!r}? " if close else ""
