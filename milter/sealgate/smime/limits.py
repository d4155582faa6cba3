"""Bounds on what ``inspect`` will read, and the two ways input can fail.

Every bound exists so that no message can make the gateway spend unbounded
time or memory (SPEC §10); exceeding one is ``too-complex``, input that cannot
be parsed is ``malformed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..codes import Code

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_size: int = 50 * MiB  # whole message, bytes
    max_depth: int = 50  # MIME nesting (multipart in multipart, and entities inside S/MIME layers)
    max_parts: int = 1000  # MIME parts in the whole message, across layers
    max_layers: int = 8  # S/MIME layers (signed, encrypted, compressed) nested in each other
    max_header_bytes: int = 256 * 1024  # one header block
    max_header_line: int = 64 * 1024  # one physical header line
    max_signature_bytes: int = 1 * MiB  # a detached signature part, or the non-content parts of CMS
    max_decompressed: int = 200 * MiB  # RFC 3274 compressed-data, after inflating


class InputError(Exception):
    """Input that ``inspect`` reports as a finding instead of raising."""

    code: ClassVar[Code] = Code.MALFORMED


class Malformed(InputError):
    code = Code.MALFORMED


class TooComplex(InputError):
    code = Code.TOO_COMPLEX
