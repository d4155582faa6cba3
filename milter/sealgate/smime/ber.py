"""A streaming BER/DER TLV reader over anything with ``read(n)``.

Only the outer CMS structure is walked with it (ContentInfo, SignedData,
EnvelopedData around content that may be many megabytes); the small pieces it
hands out as raw encodings are parsed with asn1crypto. BER from real clients
uses indefinite lengths and constructed OCTET STRINGs (X.690 §8.1.3.6,
§8.7.3), so both are supported everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .limits import Malformed, TooComplex

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3
INTEGER, OCTET_STRING, OID, SEQUENCE, SET = 2, 4, 6, 16, 17

CHUNK = 1024 * 1024
MAX_NESTING = 64  # TLV nesting walked by raw()/skip(); real CMS stays below 20


class Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


@dataclass(frozen=True)
class Tlv:
    cls: int
    constructed: bool
    number: int
    length: int | None  # None: indefinite (ends with an end-of-contents TLV)
    header: bytes  # the identifier and length octets as read
    offset: int  # position of the first identifier octet in the decoded stream

    @property
    def start(self) -> int:
        return self.offset + len(self.header)

    @property
    def end(self) -> int | None:
        return None if self.length is None else self.start + self.length

    def is_(self, cls: int, number: int) -> bool:
        return self.cls == cls and self.number == number


class BerReader:
    """Reads TLVs one after another; ``pos`` counts decoded bytes consumed.

    The reader keeps the stream's bytes in its own buffer and reads TLV headers
    by slicing it: reading them a byte at a time through the stream layers
    (region, base64, buffer) was a tenth of a small message's inspection. A
    stream with ``next_chunk()`` (:mod:`.mime`'s body streams) hands over what
    it has decoded, chunk by chunk, only when the bytes are needed: the same
    chunks are decoded, at the same points, as when they were read a few bytes at
    a time. Any other stream is asked for exactly the bytes missing.
    """

    def __init__(self, stream: Readable, what: str = "CMS") -> None:
        self._stream = stream
        self._next_chunk: Callable[[], bytes] | None = getattr(stream, "next_chunk", None)
        self._buf = b""  # bytes [self._off:] are the next ones of the stream
        self._off = 0
        self.pos = 0
        self.what = what

    # -- bytes
    def _fetch(self, n: int) -> bytes:
        """More bytes from the stream, ``n`` of them wanted; b"" at its end."""
        if self._next_chunk is not None:
            return self._next_chunk()
        return self._stream.read(n)

    def _fill(self, n: int) -> bool:
        """Make the buffer hold ``n`` bytes from ``self._off`` if the stream has them."""
        buf, off = self._buf, self._off
        have = len(buf) - off
        parts = []
        while have < n:
            data = self._fetch(n - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        if parts:  # a whole chunk is not copied when nothing is left before it
            self._buf = parts[0] if off >= len(buf) and len(parts) == 1 else b"".join(
                (buf[off:], *parts))
            self._off = 0
        return have >= n

    def _read(self, n: int) -> bytes:
        off = self._off
        end = off + n
        if end <= len(self._buf):
            self._off = end
            self.pos += n
            return self._buf[off:end]
        if n > CHUNK // 4:  # content: without joining it to what follows it
            return self._read_long(n)
        if not self._fill(n):
            raise Malformed(f"{self.what} truncated at byte {self.pos + len(self._buf) - self._off}")
        off = self._off
        self._off = off + n
        self.pos += n
        return self._buf[off:off + n]

    def _read_long(self, n: int) -> bytes:
        parts = [self._buf[self._off:]]
        have = len(parts[0])
        buf, off = b"", 0
        while have < n:
            data = self._fetch(n - have)
            if not data:
                raise Malformed(f"{self.what} truncated at byte {self.pos + have}")
            if have + len(data) > n:  # the rest of the chunk stays where it is
                buf, off = data, n - have
                data = data[:off]
            parts.append(data)
            have += len(data)
        self._buf, self._off = buf, off
        self.pos += n
        return b"".join(parts)

    def _peek(self, n: int) -> bytes:
        if len(self._buf) - self._off < n:
            self._fill(n)
        return self._buf[self._off:self._off + n]

    def buffered(self) -> tuple[bytes, int]:
        """(buffer, position in it of the next byte): what is held of the stream, to read in place.

        An empty buffer is filled first, as reading the next TLV header would (the
        same chunk, at the same point). :mod:`.cms` reads plain DER from it in one
        go and then calls :meth:`consume`; anything else it leaves to the TLV methods.
        """
        if self._off >= len(self._buf):
            self._fill(1)
        return self._buf, self._off

    def consume(self, n: int) -> None:
        """Move past ``n`` bytes that :meth:`buffered` returned."""
        self._off += n
        self.pos += n

    def at_eof(self) -> bool:
        return self._off >= len(self._buf) and not self._fill(1)

    # -- TLVs
    def header(self) -> Tlv:
        buf, off = self._buf, self._off
        if len(buf) - off < 14:  # maybe less than a whole header buffered
            if off < len(buf) or not self._fill(1):  # (a chunk only when one is due anyway)
                return self._header()
            buf, off = self._buf, self._off
            if len(buf) < 14:
                return self._header()
        first = buf[off]
        number = first & 0x1F
        lb = buf[off + 1]
        if number == 0x1F or lb > 0x84:
            return self._header()
        i = off + 2
        if lb < 0x80:
            length: int | None = lb
        elif lb == 0x80:
            if not first & 0x20:
                return self._header()  # the error, worded as always
            length = None
        else:
            i += lb & 0x7F
            length = int.from_bytes(buf[off + 2:i], "big")
        self._off = i
        offset = self.pos
        self.pos = offset + i - off
        return Tlv(first >> 6, bool(first & 0x20), number, length, buf[off:i], offset)

    def _header(self) -> Tlv:
        offset = self.pos
        first = self._read(1)
        head = bytearray(first)
        cls, constructed, number = first[0] >> 6, bool(first[0] & 0x20), first[0] & 0x1F
        if number == 0x1F:  # X.690 §8.1.2.4: high tag number, base 128
            number = 0
            for _ in range(4):
                b = self._read(1)
                head += b
                number = (number << 7) | (b[0] & 0x7F)
                if not b[0] & 0x80:
                    break
            else:
                raise Malformed(f"{self.what}: tag number too long at byte {offset}")
        lb = self._read(1)
        head += lb
        length: int | None
        if lb[0] < 0x80:
            length = lb[0]
        elif lb[0] == 0x80:
            if not constructed:
                raise Malformed(f"{self.what}: indefinite length on a primitive at byte {offset}")
            length = None
        elif lb[0] <= 0x88:
            raw = self._read(lb[0] & 0x7F)
            head += raw
            length = int.from_bytes(raw, "big")
        else:
            raise Malformed(f"{self.what}: bad length octet at byte {offset}")
        return Tlv(cls, constructed, number, length, bytes(head), offset)

    def expect(self, cls: int, number: int, what: str, constructed: bool | None = None) -> Tlv:
        tlv = self.header()
        if tlv.number != number or tlv.cls != cls or (
                constructed is not None and tlv.constructed != constructed):
            raise Malformed(f"{self.what}: expected {what} at byte {tlv.offset}")
        return tlv

    def more(self, parent: Tlv) -> bool:
        """True while ``parent`` has another child; consumes the end-of-contents marker."""
        end = parent.end
        if end is not None:
            if self.pos > end:
                raise Malformed(f"{self.what}: content overruns its length at byte {parent.offset}")
            return self.pos < end
        if self._peek(2) == b"\x00\x00":
            self._read(2)
            return False
        if self.at_eof():
            raise Malformed(f"{self.what} truncated at byte {self.pos}: no end-of-contents")
        return True

    def peek_tag(self) -> tuple[int, int] | None:
        """(class, number) of the next TLV without consuming it; None at end-of-contents."""
        b = self._peek(1)
        if not b:
            raise Malformed(f"{self.what} truncated at byte {self.pos}")
        if b == b"\x00" and self._peek(2) == b"\x00\x00":
            return None
        if b[0] & 0x1F == 0x1F:
            return (b[0] >> 6, -1)  # high tag numbers never occur where we peek
        return (b[0] >> 6, b[0] & 0x1F)

    def raw(self, tlv: Tlv, limit: int, _depth: int = 0) -> bytes:
        """The whole encoding of ``tlv`` (header already read), at most ``limit`` bytes."""
        if _depth > MAX_NESTING:
            raise TooComplex(f"{self.what}: nesting deeper than {MAX_NESTING} at byte {tlv.offset}")
        if tlv.length is not None:
            if len(tlv.header) + tlv.length > limit:
                raise TooComplex(f"{self.what}: element at byte {tlv.offset} larger than {limit} bytes")
            return tlv.header + self._read(tlv.length)
        parts = [tlv.header]
        size = len(tlv.header)
        while self.more(tlv):
            child = self.header()
            data = self.raw(child, limit - size, _depth + 1)
            size += len(data)
            parts.append(data)
        parts.append(b"\x00\x00")
        if size + 2 > limit:
            raise TooComplex(f"{self.what}: element at byte {tlv.offset} larger than {limit} bytes")
        return b"".join(parts)

    def skip(self, tlv: Tlv, _depth: int = 0) -> None:
        if _depth > MAX_NESTING:
            raise TooComplex(f"{self.what}: nesting deeper than {MAX_NESTING} at byte {tlv.offset}")
        if tlv.length is not None:
            left = tlv.length
            while left:
                n = min(left, CHUNK)
                self._read(n)
                left -= n
            return
        while self.more(tlv):
            self.skip(self.header(), _depth + 1)

    def octets(self, tlv: Tlv, sink: Callable[[bytes], object], _depth: int = 0) -> None:
        """Stream the value of an OCTET STRING, primitive or constructed (X.690 §8.7)."""
        if not tlv.is_(UNIVERSAL, OCTET_STRING) and _depth:
            raise Malformed(f"{self.what}: expected OCTET STRING segment at byte {tlv.offset}")
        if _depth > MAX_NESTING:
            raise TooComplex(f"{self.what}: nesting deeper than {MAX_NESTING} at byte {tlv.offset}")
        if not tlv.constructed:
            left = tlv.length or 0  # header() refuses indefinite primitives
            while left:
                n = min(left, CHUNK)
                sink(self._read(n))
                left -= n
            return
        while self.more(tlv):
            self.octets(self.header(), sink, _depth + 1)
