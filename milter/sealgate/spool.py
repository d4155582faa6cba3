"""Scratch storage for message bytes that never puts them on disk in clear.

The milter spools every body it reads (SPEC §10: bodies stream to temp files,
memory stays bounded), and the inspection unpacks signed or compressed
content into scratch files. That content is exactly the mail the policy may
quarantine because it escaped encryption: it must not sit in clear on the
gateway's disk, not even for the seconds a check takes, nor stay readable in
free blocks afterwards.

:class:`SealedSpool` keeps the first ``max_memory`` bytes in memory; past
that it moves to an anonymous temporary file (unlinked at once, mode 0600)
whose bytes are AES-256-CTR encrypted under a random key that lives only in
this object. CTR mode makes every byte addressable: reading or writing at any
offset only needs the keystream block of that offset (NIST SP 800-38A §6.5),
so seek/read/readinto/write behave as on a plain file. Confidentiality is all
that is needed (the file never leaves the process), so there is no MAC; a
key and counter are never reused across spools.

Cost: AES-CTR runs at several GB/s with AES-NI, well under the SHA-256 the
check computes over the same bytes anyway.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, cast

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
PIECE = 64 * 1024
_MOD = 1 << 128


class SealedSpool(io.RawIOBase):
    """A seekable read/write byte file: in memory while small, encrypted on disk beyond."""

    def __init__(self, max_memory: int = 1 << 20, *, dir: str | None = None) -> None:  # noqa: A002
        super().__init__()
        self.max_memory = max_memory
        self._dir = dir
        self._mem: bytearray | None = bytearray()
        self._fd = -1
        self._key = b""
        self._iv = 0
        self._pos = 0
        self._size = 0

    # -- io.RawIOBase ------------------------------------------------------
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def rolled(self) -> bool:
        """True once the bytes live in the (encrypted) temporary file."""
        return self._mem is None

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if n == 0:
            return 0
        if self._mem is not None:
            view[:n] = self._mem[self._pos:self._pos + n]
        else:
            # Piece by piece: a 1 MiB read costs a few 64 KiB buffers, not copies of 1 MiB.
            for start in range(0, n, PIECE):
                size = min(PIECE, n - start)
                data = os.pread(self._fd, size, self._pos + start)
                if len(data) != size:
                    raise OSError(f"spool file: short read at {self._pos + start} "
                                  f"({len(data)} of {size} bytes)")
                view[start:start + size] = self._crypt(self._pos + start, data)
        self._pos += n
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        mem = self._mem  # None once closed or rolled
        end = self._pos + len(data)
        if mem is not None and self._pos == len(mem) and end <= self.max_memory:
            # Appending while in memory: the milter's every write (headers, body chunks).
            mem += data
            self._pos = self._size = end
            return len(data)
        self._check_open()
        if not data:
            return 0  # as a file: an empty write past the end does not extend it
        if self._mem is not None and end > self.max_memory:
            self._roll()
        if self._mem is not None:
            if self._pos > len(self._mem):
                self._mem.extend(bytes(self._pos - len(self._mem)))
            self._mem[self._pos:end] = data
        else:
            if self._pos > self._size:  # a hole reads back as zeros, like a file
                self._pwrite_all(self._crypt(self._size, bytes(self._pos - self._size)), self._size)
            view = memoryview(data)
            for start in range(0, len(data), PIECE):
                self._pwrite_all(self._crypt(self._pos + start, view[start:start + PIECE]),
                                 self._pos + start)
        self._pos = end
        self._size = max(self._size, end)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._mem = None
            self._key = b""
        super().close()

    # -- internals ---------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed spool")

    def _roll(self) -> None:
        """Move the bytes held in memory to a new encrypted temporary file."""
        if self._mem is None:
            return
        fh = tempfile.TemporaryFile(dir=self._dir, prefix="sealgate-")  # noqa: SIM115 - fd kept
        self._fd = os.dup(fh.fileno())
        fh.close()
        self._key = os.urandom(32)
        self._iv = int.from_bytes(os.urandom(BLOCK), "big")
        held, self._mem = self._mem, None
        view = memoryview(held)
        for start in range(0, len(held), PIECE):  # no second whole copy in memory
            self._pwrite_all(self._crypt(start, view[start:start + PIECE]), start)
        view.release()

    def _crypt(self, offset: int, data: bytes | memoryview) -> bytes:
        """XOR ``data`` with the keystream from byte ``offset`` on (encrypt = decrypt)."""
        block, skip = divmod(offset, BLOCK)
        counter = ((self._iv + block) % _MOD).to_bytes(BLOCK, "big")
        cipher = Cipher(algorithms.AES(self._key), modes.CTR(counter)).encryptor()
        if skip:  # a stream mode: run the keystream past the first bytes of the block
            cipher.update(bytes(skip))
        return cipher.update(data)

    def _pwrite_all(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written


def sealed_spool(max_memory: int = 1 << 20) -> IO[bytes]:
    """A :class:`SealedSpool`, typed as the binary file the readers take."""
    return cast(IO[bytes], SealedSpool(max_memory))
