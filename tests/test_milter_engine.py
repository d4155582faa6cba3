"""The real `sealgate milter` process, real engine, real socket, openssl-made mail.

Messages go through sealgate.milterclient, the MTA side of the milter
protocol, the way Postfix sends them (headers, then the body in chunks).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_helpers import write_config

from sealgate import devmail as m
from sealgate.devpki import TestPKI, write_crl
from sealgate.milterclient import MilterProcess, MilterResult, split_message

BODY = m.text_entity("Hi Bob,\r\n\r\nnumbers attached.\r\n")


class RunningMilter(MilterProcess):
    def __init__(self, folder: Path, config: Path) -> None:
        self.folder = folder
        super().__init__(config, folder / "sealgate.sock", folder / "milter.log")

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")


def _start(folder: Path, pki: TestPKI, **kw) -> Iterator[RunningMilter]:
    milter = RunningMilter(folder, write_config(folder, pki, **kw))
    try:
        yield milter
    finally:
        if milter.proc.poll() is None:
            milter.stop()


@pytest.fixture(scope="module")
def milter(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMilter]:
    yield from _start(tmp_path_factory.mktemp("milter"), pki)


def header(result: MilterResult, name: str) -> str:
    values = [v for k, v in result.added_headers if k.lower() == name.lower()]
    assert len(values) == 1, result.added_headers
    return values[0]


def test_triple_wrapped_mail_is_delivered_with_authentication_results(milter, pki):
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"])
    result = milter.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.outcome == "delivered"
    ar = header(result, "Authentication-Results")
    assert ar.startswith("mx.example.com; smime=pass")
    assert "body.smime-identifier=alice@example.com" in ar
    assert header(result, "Sealgate-Policy") == "rule=internal; action=accept; codes=none"


def test_forged_authentication_results_for_our_id_is_removed(milter, pki):
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]), "alice@example.com",
                    ["bob@example.com"],
                    extra_headers=[("Authentication-Results", "other.example; smime=pass"),
                                   ("Authentication-Results", "MX.example.com; smime=pass")])
    result = milter.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.changed_headers == [(2, "Authentication-Results", "")]
    assert header(result, "Authentication-Results").startswith("mx.example.com; smime=pass")


def test_plain_internal_mail_is_stored_then_held(milter):
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"])
    result = milter.send(raw, "alice@example.com", ["bob@example.com"], queue_id="HOLD1")
    assert result.outcome == "held" and result.disposition == "discard"
    assert "unsigned" in header(result, "Sealgate-Policy")
    stored = list((milter.folder / "quarantine").rglob("*.eml"))
    assert any(p.read_bytes().endswith(split_message(raw)[1]) for p in stored)
    assert all(p.stat().st_mode & 0o077 == 0 for p in stored)


def test_malformed_mail_is_rejected_550_with_the_code(milter):
    entity = (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n!!!! not base64 !!!!\r\n")
    result = milter.send(m.message(entity, "alice@example.com", ["bob@example.com"]),
                         "alice@example.com", ["bob@example.com"])
    assert result.outcome == "rejected"
    assert result.reply is not None and result.reply.startswith("550 5.7.1")
    assert "malformed" in result.reply


def test_milter_and_check_give_the_same_decision(milter, pki, tmp_path):
    cases = [
        m.message(m.triple_wrap(BODY, pki["carol"], [pki["bob"]]), "carol@example.com",
                  ["bob@example.com"]),
        m.message(m.encrypt(m.sign(BODY, pki["alice"]), [pki["bob"]]), "alice@example.com",
                  ["bob@example.com"]),
        m.message(m.sign(BODY, pki["erin"]), "erin@example.com", ["bob@example.com"]),
    ]
    for n, raw in enumerate(cases):
        sender = split_message(raw)[0][0][1]
        result = milter.send(raw, sender, ["bob@example.com"])
        path = tmp_path / f"{n}.eml"
        path.write_bytes(raw)
        proc = subprocess.run([sys.executable, "-m", "sealgate", "check", "--config",
                               str(milter.config), "--json", str(path)],
                              capture_output=True, check=False)
        verdict = json.loads(proc.stdout)
        codes = ",".join(sorted(v["code"] for v in verdict["violations"])) or "none"
        if verdict["action"] == "reject":
            assert result.outcome == "rejected"
            assert all(c in (result.reply or "") for c in codes.split(","))
        else:
            assert header(result, "Sealgate-Policy") == (
                f"rule={verdict['rule']}; action={verdict['action']}; codes={codes}")


def test_stale_crl_tempfails_451(pki, tmp_path):
    now = dt.datetime.now(dt.UTC)
    stale = write_crl(tmp_path / "stale.crl", pki.ca, pki.revoked,
                      last_update=now - dt.timedelta(days=9), next_update=now - dt.timedelta(days=2))
    for milter in _start(tmp_path / "m", pki, crls=[stale]):
        raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]), "alice@example.com",
                        ["bob@example.com"])
        result = milter.send(raw, "alice@example.com", ["bob@example.com"])
        assert result.outcome == "deferred"
        assert result.reply is not None and result.reply.startswith("451 4.7.1")
        assert "crl-unavailable" in result.reply


@pytest.mark.slow
def test_fifty_megabyte_message_is_streamed_in_bounded_memory(milter, pki):
    # 36 MiB of content is 49 MB once base64-encoded: under max_message_size (50 MiB).
    attachment = m.binary_attachment(36 * 1024 * 1024)
    raw = m.message(m.sign(attachment, pki["alice"]), "alice@example.com", ["bob@example.com"])
    del attachment
    assert 45_000_000 < len(raw) < 50 * 1024 * 1024
    before = milter.peak_rss_kib()
    result = milter.send(raw, "alice@example.com", ["bob@example.com"], queue_id="BIG1")
    after = milter.peak_rss_kib()
    assert header(result, "Sealgate-Policy") == "rule=internal; action=quarantine; codes=unencrypted"
    # The body is spooled to disk and hashed as it streams: the milter's peak
    # RSS must grow by far less than the message (49 MB) itself.
    assert (after - before) * 1024 < len(raw) // 2, (before, after)


def test_sighup_reloads_and_does_not_stop_the_milter(milter, pki):
    import signal
    import time

    milter.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while b"event=reload " not in milter.log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"event=reload generation=1" in milter.log.read_bytes()
    assert milter.proc.poll() is None
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]), "alice@example.com",
                    ["bob@example.com"])
    assert milter.send(raw, "alice@example.com", ["bob@example.com"]).outcome == "delivered"
