"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class RdftError(Exception):
    """A problem the user can fix; the message names the fix in one line."""

    exit_code = 2


class EnvBuildError(RdftError):
    """Building an environment failed; the message carries the failing command's tail."""

    exit_code = 1

    def __init__(self, message: str, tail: str = ""):
        super().__init__(message)
        self.tail = tail
