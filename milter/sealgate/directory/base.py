"""The directory interface the engine depends on.

A backend answers three questions about published certificates. It raises
:class:`sealgate.errors.DirectoryUnavailable` when it cannot answer now; the
engine turns that into ``directory-unavailable`` (tempfail), never an accept.
"""

from __future__ import annotations

from typing import Protocol

from asn1crypto import x509


class Directory(Protocol):
    def certificates_for(self, address: str) -> list[x509.Certificate]:
        """Certificates published for a mail address (case-insensitive); [] if none."""

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        """A published certificate with this issuer and serial number."""

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        """A published certificate with this subject key identifier."""
