"""The run's time budget (`--timeout`): durations as the user writes them."""

from __future__ import annotations

from rdft.errors import RdftError


def parse_duration(text: str) -> float:
    """'12h', '90m', '3600s', '1d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        raise RdftError(f"--timeout {text!r} is not a duration; use e.g. 12h, 90m or 3600") from None
    if seconds <= 0:
        raise RdftError(f"--timeout {text!r} must be positive")
    return seconds
