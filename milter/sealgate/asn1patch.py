"""asn1crypto 1.5.1 takes some definite lengths for indefinite ones; this corrects it.

Its ``dump()`` methods decide that a value was read in the indefinite-length
form when the last byte of its header is 0x80, and then re-encode the whole
value from its parsed parts (``force``). A definite length in the long form
can end in 0x80 as well: a certificate, its TBS part or a name of 0x180, 0x280,
... bytes (about one in 256). Re-encoding DER gives the same bytes, slowly
(0.5 ms for a certificate), and not safely between threads: the forced dump
of a string empties its contents and sets them again, so that a thread
reading the value meanwhile gets None. pyhanko-certvalidator dumps the
certificates it validates, which the milter's threads share (certs.settle):
threads judging messages at once were told that a certificate "could not be
verified" or that its version "must be an integer ... not NoneType".
Upstream: wbond/asn1crypto issue 249 (open).

The correction, applied once by :func:`apply` (sealgate.certs imports this
module): a value whose header ends in 0x80 and that has no end-of-contents
trailer was read with a definite length, and its ``dump()`` returns header
and contents as read, as ``dump()`` does for every other parsed value.
Values built or changed in code, values really read in the indefinite form,
and ``dump(force=True)`` go to asn1crypto's own ``dump()`` as before.

This module is not compiled (sealgate/native.txt): the wrappers must be
plain Python functions to become methods.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asn1crypto import core

_MARK = "_sealgate_definite_dump"
_CLASSES = (core.Asn1Value, core.Choice, core.Primitive, core.Sequence, core.SequenceOf)


def apply() -> None:
    """Wrap the ``dump`` of every asn1crypto class that has the check (idempotent)."""
    for cls in _CLASSES:
        current = cls.__dict__.get("dump")
        if current is not None and not getattr(current, _MARK, False):
            cls.dump = _definite_dump(current)  # type: ignore[method-assign]


def _definite_dump(original: Callable[..., bytes]) -> Callable[..., bytes]:
    @functools.wraps(original)
    def dump(self: Any, force: bool = False) -> bytes:
        if not force:
            header = self._header
            if header is not None and header[-1:] == b"\x80" and not self._trailer:
                # Contents as dump() takes them: a changed Sequence re-encodes its
                # children here (which clears the header); a Choice is its chosen value.
                contents = self.chosen.dump() if isinstance(self, core.Choice) else self.contents
                header = self._header
                if header is not None and contents is not None:
                    return bytes(header + contents)
        return original(self, force)

    setattr(dump, _MARK, True)
    return dump
