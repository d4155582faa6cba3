"""Reading a TOML file against a schema, collecting every error with its key.

Shared by the configuration (``config.py``) and the policy loader: a
:class:`Reader` gathers errors and warnings for one file, and the converters
turn TOML values into typed ones, raising ``ValueError`` with a message that
shows the bad value.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, ConfigErrors
from .units import parse_duration, parse_size, show

# --------------------------------------------------------------- reading TOML


class Reader:
    """Collects errors about one TOML file; shared with the policy loader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(ConfigError(self.file, key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(ConfigError(self.file, key, message))

    def parse(self) -> dict[str, Any] | None:
        """The file's TOML document, or None (with an error) if unreadable."""
        try:
            with open(self.path, "rb") as fh:
                return tomllib.load(fh)
        except OSError as exc:
            self.error("", f"cannot read the file: {exc.strerror or exc}")
        except tomllib.TOMLDecodeError as exc:
            self.error("", f"not valid TOML: {exc}")
        return None

    def document(self) -> dict[str, Any]:
        """The file's TOML document; raises ConfigErrors if it cannot be read or parsed."""
        document = self.parse()
        self.raise_if_errors()
        assert document is not None  # noqa: S101 - parse() returns None only with an error
        return document

    def check_keys(self, table: Mapping[str, Any], prefix: str, known: Iterable[str]) -> None:
        """One error per key of ``table`` not in ``known``, with a suggestion."""
        names = list(known)
        for key in table:
            if key in names:
                continue
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {show(close[0])}?" if close else "known: " + ", ".join(names)
            what = "table" if isinstance(table[key], dict) else "key"
            self.error(join_key(prefix, key), f"unknown {what} ({hint})")

    def has_error(self, key: str) -> bool:
        return any(e.key == key or e.key.startswith(key + "[") for e in self.errors)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def join_key(prefix: str, key: str) -> str:
    # TOML dotted keys; quote a key that needs it ("weak-algorithm" does not).
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else show(key)
    return f"{prefix}.{shown}" if prefix else shown


# --------------------------------------------------------------- converters
#
# A converter takes the TOML value and the config folder and returns the typed
# value, or raises ValueError with a message that shows the bad value.

Converter = Callable[[Any, Path], Any]


def as_str(value: Any, _base: Path) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not a string")
    return value


def as_nonempty_str(value: Any, base: Path) -> str:
    if not as_str(value, base).strip():
        raise ValueError("must not be empty")
    return value


def as_bool(value: Any, _base: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{show(value)} is not true or false")
    return value


def as_duration(value: Any, _base: Path) -> int:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError(f"{show(value)} must be longer than zero")
    return seconds


def as_size(value: Any, _base: Path) -> int:
    size = parse_size(value)
    if size == 0:
        raise ValueError(f"{show(value)} must be larger than zero")
    return size


def one_of(*choices: str) -> Converter:
    def convert(value: Any, base: Path) -> str:
        if as_str(value, base) not in choices:
            raise ValueError(f"{show(value)} is not one of " + ", ".join(map(show, choices)))
        return value
    return convert


def as_path(value: Any, base: Path) -> Path:
    if not as_nonempty_str(value, base):
        raise ValueError("must not be empty")
    return Path(os.path.normpath(base / value))


def as_optional_path(value: Any, base: Path) -> Path | None:
    return as_path(value, base) if as_str(value, base) else None


def list_of(item: Converter) -> Converter:
    """A TOML array; an element's error names its index (``trust.anchors[1]``)."""
    def convert(value: Any, base: Path) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{show(value)} is not an array (write [\"...\"])")
        out: list[Any] = []
        problems = []
        for i, element in enumerate(value):
            try:
                out.append(item(element, base))
            except ValueError as exc:
                out.append(None)
                problems.append((i, str(exc)))
        if problems:
            raise ElementErrors(problems, tuple(out))
        return tuple(out)
    return convert


class ElementErrors(ValueError):
    """Some elements of an array are wrong; ``partial`` has None in their places."""

    def __init__(self, problems: list[tuple[int, str]], partial: tuple[Any, ...]) -> None:
        super().__init__(problems)
        self.problems = problems
        self.partial = partial
