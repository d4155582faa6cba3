"""Digests of signed content, streamed (RFC 5652 §5.4, RFC 8551 §3.1.1).

The detached content of multipart/signed is hashed in the same pass that finds
its end, with the algorithms the ``micalg`` parameter announces: a 25 MB
message then costs one read and one digest. The SignerInfos, read afterwards,
are authoritative; algorithms the guess missed get a second pass.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Set
from typing import IO

from .limits import Malformed
from .mime import CHUNK, Cursor, Delimiter, delimiter_at, delimiter_in

_BARE_LF = re.compile(rb"(?<!\r)\n")
# micalg values (RFC 8551 §3.5.3.2, RFC 5751 used "sha1", older clients "sha-1") -> hashlib
MICALG = {"md5": "md5", "sha-1": "sha1", "sha1": "sha1", "sha-224": "sha224", "sha224": "sha224",
          "sha-256": "sha256", "sha256": "sha256", "sha-384": "sha384", "sha384": "sha384",
          "sha-512": "sha512", "sha512": "sha512"}


_CONSTRUCTED = frozenset(MICALG.values())


def _new_hash(name: str, data: memoryview) -> hashlib._Hash:
    """``hashlib.new(name, data)`` by the named constructor: a Python call less (1 µs)."""
    make = getattr(hashlib, name, None) if name in _CONSTRUCTED else None
    return make(data) if make is not None else hashlib.new(name, data)


def micalg_names(micalg: str | None) -> frozenset[str]:
    """hashlib names of a micalg parameter (sha256 if none is known)."""
    if micalg is not None and len(micalg) > 64:
        return _micalg_names.__wrapped__(micalg)
    return _micalg_names(micalg)


@functools.lru_cache(maxsize=64)
def _micalg_names(micalg: str | None) -> frozenset[str]:
    # The same few values recur ("sha-256"); 0.7 µs a message.
    names = {MICALG.get(v.strip().lower(), "") for v in (micalg or "").split(",")} - {""}
    return frozenset(names or {"sha256"})


def hash_until_delimiter(f: IO[bytes], pos: int, end: int, boundary: bytes, names: Set[str],
                         cur: Cursor | None = None) -> tuple[Delimiter | None, dict[str, bytes] | None]:
    """Find the delimiter after the line start ``pos``; digest the raw bytes before it.

    Same answer as :func:`mime.find_delimiter`; digests None when a line merely looked
    like a delimiter (hostile content: the caller falls back to find_delimiter, then hashes);
    the digests cover [pos, delimiter.content_end), or [pos, end) if none is found.
    ``cur``, a Cursor on ``f`` ending at ``end``, may already hold the bytes (a small
    message): they are then searched and hashed where they are, not read again.
    """
    if cur is not None and cur.end == end:
        held = cur.held(pos, end)
        if held is not None:
            return _hash_held(cur, held[0], held[1], pos, end, boundary, names)
    hashers = [hashlib.new(n) for n in sorted(names)]
    verify = Cursor(f, pos, end, chunk=64 * 1024)
    dash = b"--" + boundary
    if verify.get(pos, len(dash)) == dash:
        found = delimiter_at(verify, pos, pos, dash)
        if found is not None:
            return found, {n: h.digest() for n, h in zip(sorted(names), hashers, strict=True)}
    pat = b"\n" + dash
    hold = len(pat)  # a partial match, and the CR before it, stay unhashed until decided
    # No bigger than the region: a zeroed megabyte for a 10 KB message was a tenth of its
    # whole inspection.
    size = max(0, min(CHUNK, end - pos))
    buf = bytearray(size + hold)
    view = memoryview(buf)
    base, have, read_at = pos, 0, pos  # buf[0:have] holds bytes [base, base + have)
    while True:
        n = min(size, end - read_at)
        got = 0
        if n > 0:
            f.seek(read_at)
            got = f.readinto(view[have:have + n]) or 0  # type: ignore[attr-defined]
        read_at += got
        have += got
        last = read_at >= end or got == 0
        i = buf.find(pat, 0, have)
        if i >= 0:
            # the line end before the delimiter belongs to it (RFC 2046 §5.1.1)
            content_end = base + i - (1 if i > 0 and buf[i - 1] == 0x0D else 0)
            d = delimiter_at(verify, base + i + 1, content_end, dash)
            if d is None:
                return None, None
            for h in hashers:
                h.update(view[:d.content_end - base])
            return d, {n: h.digest() for n, h in zip(sorted(names), hashers, strict=True)}
        keep = 0 if last else min(hold, have)
        for h in hashers:
            h.update(view[:have - keep])
        if last:
            return None, {n: h.digest() for n, h in zip(sorted(names), hashers, strict=True)}
        buf[:keep] = buf[have - keep:have]
        base += have - keep
        have = keep


def _hash_held(cur: Cursor, buf: bytes | bytearray, base: int, pos: int, end: int, boundary: bytes,
               names: Set[str]) -> tuple[Delimiter | None, dict[str, bytes] | None]:
    """:func:`hash_until_delimiter` on bytes [pos, end) held at ``buf[pos - base:]``."""
    dash = b"--" + boundary
    found: Delimiter | None = None
    stop = end
    if buf.startswith(dash, pos - base):
        found = delimiter_in(cur, buf, base, pos, pos, dash)
        if found is not None:
            stop = pos
    if found is None:
        i = buf.find(b"\n" + dash, pos - base, end - base)
        if i >= 0:
            # the line end before the delimiter belongs to it (RFC 2046 §5.1.1)
            content_end = base + i - (1 if base + i > pos and buf[i - 1] == 0x0D else 0)
            found = delimiter_in(cur, buf, base, base + i + 1, content_end, dash)
            if found is None:
                return None, None
            stop = found.content_end
    with memoryview(buf) as view:
        part = view[pos - base:stop - base]
        digests = {n: _new_hash(n, part).digest() for n in sorted(names)}
        part.release()
    return found, digests


def hash_range(f: IO[bytes], start: int, end: int, names: set[str],
               canonical: bool) -> dict[str, bytes]:
    """Digests of bytes [start, end) of ``f``; ``canonical``: each bare LF hashed as CRLF."""
    hashers = {n: hashlib.new(n) for n in names}
    size = max(0, min(CHUNK, end - start))  # no bigger than the range (see above)
    buf = bytearray(size)
    view = memoryview(buf)
    pos, last_cr = start, False
    while pos < end:
        f.seek(pos)
        got = f.readinto(view[:min(size, end - pos)])  # type: ignore[attr-defined]
        if not got:
            raise Malformed(f"file shorter than expected at byte {pos}")
        pos += got
        data: bytes | memoryview = view[:got]
        if canonical and buf.find(b"\n", 0, got) >= 0:
            raw = bytes(data)
            if last_cr and raw[:1] == b"\n":
                data = b"\n" + _BARE_LF.sub(b"\r\n", raw[1:])
            else:
                data = _BARE_LF.sub(b"\r\n", raw)
        last_cr = data[-1:] == b"\r" if isinstance(data, bytes) else buf[got - 1] == 0x0D
        for h in hashers.values():
            h.update(data)
    return {n: h.digest() for n, h in hashers.items()}
