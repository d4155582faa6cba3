"""Bad input is normal input: mutated S/MIME through the whole engine.

The inspector has its own mutation tests; these drive ``Gateway.evaluate``
end to end, so that certificate parsing, signature verification, path
validation and the recipient checks meet broken data too. Every outcome must
be a verdict — never an exception.
"""

from __future__ import annotations

import base64
import io

import pytest
from gateway_helpers import gateway_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealgate import devmail as m
from sealgate.codes import Action
from sealgate.devpki import TestPKI
from sealgate.engine import Gateway
from sealgate.model import Envelope, Verdict

BODY = m.text_entity("Hi,\r\n\r\nfigures attached.\r\n")
ENVELOPE = Envelope("alice@example.com", ("bob@example.com",))


@pytest.fixture(scope="module")
def gw(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return gateway_for(tmp_path_factory.mktemp("fuzz"), pki)


@pytest.fixture(scope="module")
def seeds(pki: TestPKI) -> list[bytes]:
    alice, bob, frank = pki["alice"], pki["bob"], pki["frank"]
    entities = [
        m.triple_wrap(BODY, alice, [bob, alice]),
        m.sign(m.encrypt(BODY, [bob, frank], cipher="aes-256-gcm"), alice, detached=False),
        m.sign(BODY, frank, extra_signers=[alice]),
        m.sign(m.compress(BODY), alice, include_certs=False, pss=True),
        m.encrypt(m.sign(BODY, alice, keyid=True), [bob], keyid=True),
    ]
    return [m.message(e, "alice@example.com", ["bob@example.com"]) for e in entities]


def _der_bodies(raw: bytes) -> list[tuple[int, int]]:
    """Spans of the base64 bodies in a message (the CMS blobs)."""
    spans = []
    pos = 0
    while (start := raw.find(b"base64\r\n", pos)) >= 0:
        body_start = raw.find(b"\r\n\r\n", start) + 4
        end = raw.find(b"\r\n\r\n", body_start)
        end = raw.find(b"\r\n--", body_start) if end < 0 else min(
            end, raw.find(b"\r\n--", body_start) if raw.find(b"\r\n--", body_start) >= 0 else end)
        spans.append((body_start, end if end > body_start else len(raw)))
        pos = body_start
    return spans


def mutate_der(raw: bytes, span: tuple[int, int], at: float, value: int, kind: int) -> bytes:
    """Decode one CMS blob, change one byte (or cut it), re-encode: parsers see broken DER."""
    start, end = span
    try:
        der = bytearray(base64.b64decode(raw[start:end].replace(b"\r\n", b"")))
    except ValueError:
        return raw
    if not der:
        return raw
    i = int(at * (len(der) - 1))
    if kind == 0:
        der[i] = value
    elif kind == 1:
        der[i] ^= 1 << (value % 8)
    elif kind == 2:
        del der[i:]
    else:
        der[i:i] = bytes([value])
    blob = base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    return raw[:start] + blob + raw[end:]


def assert_verdict(gw: Gateway, raw: bytes) -> Verdict:
    verdict = gw.evaluate(io.BytesIO(raw), ENVELOPE)
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.action, Action)
    return verdict


def test_seeds_are_accepted_or_judged(gw, seeds):
    for raw in seeds:
        assert_verdict(gw, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_cms_inside_real_messages_always_gets_a_verdict(gw, seeds, data):
    raw = data.draw(st.sampled_from(seeds))
    spans = _der_bodies(raw)
    span = data.draw(st.sampled_from(spans))
    mutated = mutate_der(raw, span, data.draw(st.floats(0, 1)), data.draw(st.integers(0, 255)),
                         data.draw(st.integers(0, 3)))
    assert_verdict(gw, mutated)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_message_bytes_always_get_a_verdict(gw, seeds, data):
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.integers(0, 2))
        if op == 0:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == 1:
            del raw[i:i + data.draw(st.integers(1, 200))]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=50))
    assert_verdict(gw, bytes(raw))
