"""Endpoint errors: one sentence for the person at the keyboard."""

from __future__ import annotations

from ..errors import SealgateError


class EndpointError(SealgateError):
    """Something the user can fix: a missing certificate, a bad file, an unknown recipient."""


class CardError(EndpointError):
    """The card (PKCS#11 token) refused or is not there."""


class PinError(CardError):
    """Wrong PIN, a locked PIN, or no PIN source."""


class SubmitTemporary(EndpointError):
    """The submission server is unreachable or answered 4xx: try again later (EX_TEMPFAIL)."""
