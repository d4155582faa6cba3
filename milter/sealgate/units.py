"""Durations and sizes as an administrator writes them (SPEC §4).

Durations: ``30s``, ``10m``, ``2h``, ``90d`` (a plain integer is seconds).
Sizes: ``512KiB``, ``50MiB``, ``1GiB`` (a plain integer is bytes). Each parser
raises :class:`ValueError` with one sentence that says what to write instead.
"""

from __future__ import annotations

import json
import re

DURATION_HINT = "use 30s, 10m, 2h, 90d"
SIZE_HINT = "use 512KiB, 50MiB, or a number of bytes"

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Binary units only, spelled as in the SPEC; "50MB" is refused rather than
# guessed (is it 10^6 or 2^20?), with a hint.
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}

_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhd])\s*", re.IGNORECASE)
_SIZE_RE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def show(value: object) -> str:
    """A value the way it looks in TOML, for error messages: "5x", 12, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def parse_duration(value: object) -> int:
    """Seconds from ``30s``/``10m``/``2h``/``90d`` or a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{show(value)} is negative ({DURATION_HINT})")
        return value
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match:
            return int(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    raise ValueError(f"{show(value)} is not a duration ({DURATION_HINT})")


def parse_size(value: object) -> int:
    """Bytes from ``512KiB``/``50MiB`` or a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{show(value)} is negative ({SIZE_HINT})")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    raise ValueError(f"{show(value)} is not a size ({SIZE_HINT})")


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 300 -> "5m", 90 -> "90s"."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % factor == 0:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """The shortest exact spelling: 52428800 -> "50MiB"."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
