"""SealedSpool: a file that behaves like one, and whose disk bytes are never the clear text."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealgate.spool import SealedSpool

MARKER = b"CONFIDENTIAL-MERGER-PLAN-7d1f"


def disk_bytes(spool: SealedSpool) -> bytes:
    """What the kernel holds for the spool's temporary file (read beside the object)."""
    fd = spool._fd
    assert fd >= 0, "the spool has not rolled to disk"
    return os.pread(fd, os.fstat(fd).st_size, 0)


def test_small_content_stays_in_memory() -> None:
    with SealedSpool(max_memory=1024) as spool:
        spool.write(MARKER)
        assert not spool.rolled
        spool.seek(0)
        assert spool.read() == MARKER


def test_large_content_is_encrypted_on_disk_and_reads_back_exactly() -> None:
    body = (MARKER + b"\r\n") * 20_000
    with SealedSpool(max_memory=4096) as spool:
        for i in range(0, len(body), 777):
            spool.write(body[i:i + 777])
        assert spool.rolled
        on_disk = disk_bytes(spool)
        assert len(on_disk) == len(body)
        assert MARKER not in on_disk
        assert spool.tell() == len(body)
        spool.seek(0)
        assert spool.read() == body
        spool.seek(12_345)
        buf = bytearray(1000)
        assert spool.readinto(buf) == 1000
        assert bytes(buf) == body[12_345:13_345]


def test_temporary_file_is_private_and_unlinked() -> None:
    with SealedSpool(max_memory=16) as spool:
        spool.write(b"x" * 100)
        path = os.readlink(f"/proc/self/fd/{spool._fd}")
        assert path.endswith("(deleted)") or "sealgate-" not in os.listdir(os.path.dirname(path))
        assert os.fstat(spool._fd).st_mode & 0o077 == 0


def test_two_spools_with_the_same_content_differ_on_disk() -> None:
    body = MARKER * 1000
    with SealedSpool(max_memory=16) as a, SealedSpool(max_memory=16) as b:
        a.write(body)
        b.write(body)
        assert disk_bytes(a) != disk_bytes(b)  # fresh key and counter per spool


def test_closed_spool_refuses_io() -> None:
    spool = SealedSpool(max_memory=16)
    spool.write(b"y" * 64)
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        spool.read(1)


def test_negative_seek_is_refused() -> None:
    with SealedSpool() as spool, pytest.raises(ValueError, match="negative"):
        spool.seek(-1)


ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.binary(max_size=300)),
    st.tuples(st.just("seek"), st.integers(0, 2000), st.sampled_from([io.SEEK_SET, io.SEEK_END])),
    st.tuples(st.just("read"), st.integers(-1, 500)),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_memory=st.sampled_from([0, 17, 256, 1 << 20]))
def test_behaves_like_a_bytesio(ops: list[tuple], max_memory: int) -> None:
    model = io.BytesIO()
    with SealedSpool(max_memory=max_memory) as spool:
        for op in ops:
            if op[0] == "write":
                assert spool.write(op[1]) == model.write(op[1])
            elif op[0] == "seek":
                offset = op[1] if op[2] == io.SEEK_SET else -min(op[1], len(model.getvalue()))
                assert spool.seek(offset, op[2]) == model.seek(offset, op[2])
            else:
                assert spool.read(op[1]) == model.read(op[1])
            assert spool.tell() == model.tell()
        spool.seek(0)
        assert spool.read() == model.getvalue()
