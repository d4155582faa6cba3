"""Exceptions that carry the coordinates of what went wrong."""

from __future__ import annotations


class SealgateError(Exception):
    """Base class; the message is one sentence for a person."""


class ConfigError(SealgateError):
    """A configuration or policy error, naming file and key."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


class ConfigErrors(SealgateError):
    """Every error found in one configuration or policy file, not just the first.

    ``str()`` gives one line per error (``FILE: KEY: message``), ready to print.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class DirectoryUnavailable(SealgateError):
    """The directory did not answer (in time); the message is tempfailed."""


class CrlUnavailable(SealgateError):
    """No CRL valid now for an issuer."""


class StoreError(SealgateError):
    """The quarantine store could not keep a message durably."""
