"""SPEC §8 metrics and /healthz: scraped from a real milter after real Postfix traffic."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from cryptography import x509
from gateway_helpers import write_config
from postfix_fixtures import SealgateProcess, copy_directory, mta, sample_value  # noqa: F401
from prometheus_client.parser import text_string_to_metric_families

from sealgate import devmail as m
from sealgate.devpki import TestPKI, write_crl
from sealgate.devpostfix import DevPostfix, free_port
from sealgate.metrics import Metrics, gateway_health
from sealgate.milterclient import wait_for_milter

BODY = m.text_entity("Hello,\r\n\r\nmetrics.\r\n")

# The contract (SPEC §8): family name -> (type, label names).
SPEC_METRICS = {
    "sealgate_messages": ("counter", {"direction", "action"}),
    "sealgate_violations": ("counter", {"code"}),
    "sealgate_message_seconds": ("histogram", set()),
    "sealgate_directory_seconds": ("histogram", set()),
    "sealgate_directory_lookups": ("counter", {"result"}),
    "sealgate_crl_next_update_timestamp_seconds": ("gauge", {"issuer"}),
    "sealgate_quarantine_messages": ("gauge", set()),
    "sealgate_errors": ("counter", {"kind"}),
}


@pytest.fixture(scope="module")
def traffic(mta: DevPostfix, pki: TestPKI) -> Iterator[tuple[SealgateProcess, dict[str, int]]]:  # noqa: F811
    """A fresh milter; send a known mix of mail through Postfix; yield it and the counts."""
    process = SealgateProcess(mta, pki, directory=copy_directory(pki, mta.base / "pub")).start()
    sent = {"accept": 0, "tag": 0, "quarantine": 0, "reject": 0}
    try:
        for i in range(3):
            raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                            "alice@example.com", ["bob@example.com"], subject=f"pass {i}")
            assert mta.send(raw, "alice@example.com", ["bob@example.com"]).code == 250
            sent["accept"] += 1
        for i in range(2):
            raw = m.message(BODY, "ext@example.net", ["bob@example.com"], subject=f"tag {i}")
            assert mta.send(raw, "ext@example.net", ["bob@example.com"]).code == 250
            sent["tag"] += 1
        for i in range(4):
            raw = m.message(BODY, "alice@example.com", ["bob@example.com"], subject=f"hold {i}")
            assert mta.send(raw, "alice@example.com", ["bob@example.com"]).code == 250
            sent["quarantine"] += 1
        bad = (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n!!!! not base64 !!!!\r\n")
        raw = m.message(bad, "alice@example.com", ["bob@example.com"], subject="reject")
        assert mta.send(raw, "alice@example.com", ["bob@example.com"]).code == 550
        sent["reject"] += 1
        # A message is counted by the milter's outcome thread, up to 0.1 s after its answer.
        deadline = time.monotonic() + 30
        while sample_value(process.scrape()[1], "sealgate_message_seconds_count") < sum(
                sent.values()):
            assert time.monotonic() < deadline, "the messages were not all counted"
            time.sleep(0.05)
        yield process, sent
    finally:
        process.stop()


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exactly_the_spec_metric_names_types_and_labels(traffic) -> None:
    process, _sent = traffic
    status, text = process.scrape()
    assert status == 200
    found = families(text)
    sealgate = {name for name in found if name.startswith("sealgate_")}
    assert sealgate == set(SPEC_METRICS)
    for name, (kind, labels) in SPEC_METRICS.items():
        family = found[name]
        assert family.type == kind, name  # type: ignore[attr-defined]
        for sample in family.samples:  # type: ignore[attr-defined]
            assert set(sample.labels) - {"le"} <= labels, (name, sample)


def test_counters_match_the_messages_sent(traffic) -> None:
    process, sent = traffic
    _status, text = process.scrape()
    total = sum(sent.values())
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "internal", "action": "accept"}) == sent["accept"]
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "inbound", "action": "tag"}) == sent["tag"]
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "internal", "action": "quarantine"}) == sent["quarantine"]
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "internal", "action": "reject"}) == sent["reject"]
    assert sample_value(text, "sealgate_message_seconds_count") == total
    # Violations: unsigned for each tagged and each held message; malformed once.
    assert sample_value(text, "sealgate_violations_total", {"code": "unsigned"}) == \
        sent["tag"] + sent["quarantine"]
    assert sample_value(text, "sealgate_violations_total", {"code": "malformed"}) == 1
    assert sample_value(text, "sealgate_quarantine_messages") == sent["quarantine"]
    assert sample_value(text, "sealgate_errors_total") == 0
    # Passing mail needs the directory (signer and recipients): every lookup is timed.
    lookups = sum(sample_value(text, "sealgate_directory_lookups_total", {"result": r})
                  for r in ("found", "not-found", "error"))
    assert lookups >= sent["accept"]
    assert sample_value(text, "sealgate_directory_lookups_total", {"result": "found"}) > 0
    assert sample_value(text, "sealgate_directory_seconds_count") == lookups


def test_crl_next_update_is_the_loaded_crls(traffic, pki) -> None:
    process, _sent = traffic
    _status, text = process.scrape()
    der = pki.crl_path.read_bytes()
    if pem.detect(der):
        der = pem.unarmor(der)[2]
    crl = asn1_crl.CertificateList.load(der)
    next_update = crl["tbs_cert_list"]["next_update"].native
    issuer = x509.load_pem_x509_certificate(pki.ca.cert_path.read_bytes()).subject.rfc4514_string()
    (family,) = [f for f in text_string_to_metric_families(text)
                 if f.name == "sealgate_crl_next_update_timestamp_seconds"]
    ((labels, value),) = [(s.labels, s.value) for s in family.samples]
    assert value == next_update.timestamp()
    assert labels == {"issuer": issuer}  # RFC 4514 text of the CA's name


def test_healthz_is_ready_with_config_policy_anchors_and_a_valid_crl(traffic) -> None:
    process, _sent = traffic
    assert process.scrape("/healthz") == (200, "ok\n")
    assert process.scrape("/nothing")[0] == 404


def test_healthz_is_503_with_the_reason_when_the_crl_is_past_next_update(pki, tmp_path) -> None:
    now = dt.datetime.now(dt.UTC)
    stale = write_crl(tmp_path / "stale.crl", pki.ca, pki.revoked,
                      last_update=now - dt.timedelta(days=9), next_update=now - dt.timedelta(days=2))
    config = write_config(tmp_path / "site", pki, crls=[stale])
    port = free_port()
    config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{port}"'))
    proc = subprocess.Popen([sys.executable, "-m", "sealgate", "milter", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_milter(tmp_path / "site" / "sealgate.sock", proc)
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503
        assert "CRL past its nextUpdate" in body
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert sample_value(text, "sealgate_crl_next_update_timestamp_seconds") < time.time()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_metrics_listen_in_use_is_an_error_naming_the_key(pki, tmp_path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "site", pki)
        config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{port}"'))
        proc = subprocess.run([sys.executable, "-m", "sealgate", "milter", "--config", str(config)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port} ([metrics] listen)" in proc.stderr


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback http
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# ---------------------------------------------------------------- pure parts


class _Trust:
    def __init__(self, next_updates: dict[str, dt.datetime | None], anchors: tuple = ("ca",),
                 require_crl: bool = True) -> None:
        self._next = next_updates
        self.anchors = anchors
        self.require_crl = require_crl

    def crl_next_updates(self) -> dict[str, dt.datetime | None]:
        return self._next


class _Gateway:
    def __init__(self, trust: _Trust, policy: object = "policy") -> None:
        self.trust = trust
        self.policy = policy


NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("gateway", "ready", "reason"), [
    (None, False, "configuration not loaded"),
    (_Gateway(_Trust({"CN=CA": NOW + dt.timedelta(days=1)}), policy=None), False, "policy not loaded"),
    (_Gateway(_Trust({"CN=CA": NOW}, anchors=())), False, "no trust anchors loaded"),
    (_Gateway(_Trust({})), False, "no CRL loaded"),
    (_Gateway(_Trust({}, require_crl=False)), True, "ok"),
    (_Gateway(_Trust({"CN=CA": NOW - dt.timedelta(seconds=1)})), False, "CN=CA (nextUpdate 2029"),
    (_Gateway(_Trust({"CN=CA": NOW + dt.timedelta(hours=1)})), True, "ok"),
])
def test_health_rules(gateway: object, ready: bool, reason: str) -> None:
    health = gateway_health(gateway, NOW)
    assert health.ready is ready
    assert reason in health.reason


def test_metrics_use_their_own_registry() -> None:
    from prometheus_client import REGISTRY

    a, b = Metrics(), Metrics()  # two in one process do not collide
    a.message("internal", "accept", (), 0.01)
    assert b"sealgate_messages_total{" not in b.exposition()
    assert "sealgate_messages" not in {c.name for c in REGISTRY.collect()}


def test_quarantine_gauge_survives_a_failing_store() -> None:
    metrics = Metrics()

    def broken() -> int:
        raise OSError("database is locked")

    metrics.watch_quarantine(broken)
    text = metrics.exposition().decode()
    assert "sealgate_quarantine_messages NaN" in text


SHARED_AFTER_FORK = r"""
import os, sys, tempfile
from sealgate.metrics import Metrics, share_metrics
folder = tempfile.mkdtemp()
share_metrics(folder)
metrics = Metrics(shared_dir=folder)
metrics.message("internal", "accept", (), 0.01)
child = os.fork()
if child == 0:  # the forked worker: its updates go to its own files
    mine = Metrics(shared_dir=folder)
    mine.message("internal", "accept", ("unsigned",), 0.02)
    mine.flush()  # as sealgate milter does at its end
    os._exit(0)
os.waitpid(child, 0)
metrics.message("internal", "accept", (), 0.01)
print(os.getpid(), child)
print(" ".join(sorted(os.listdir(folder))))
sys.stdout.write(metrics.exposition().decode())
"""


def test_shared_metrics_follow_a_fork_into_the_childs_own_files() -> None:
    """The process id read from memory (no getpid per update) still changes in a forked child."""
    out = subprocess.run([sys.executable, "-c", SHARED_AFTER_FORK], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    pids, files, exposition = out.split("\n", 2)
    parent, child = pids.split()
    assert files.split() == sorted(f"{kind}_{pid}.db" for kind in ("counter", "histogram")
                                   for pid in (parent, child))
    accepted = {"direction": "internal", "action": "accept"}
    assert sample_value(exposition, "sealgate_messages_total", accepted) == 3
    assert sample_value(exposition, "sealgate_violations_total", {"code": "unsigned"}) == 1
    assert sample_value(exposition, "sealgate_message_seconds_count") == 3


class _Recording:
    """A counter / histogram stand-in that records what reaches it (pure logic)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.applied = threading.Event()

    def inc(self, amount: float) -> None:
        self.calls.append(amount)
        self.applied.set()

    observe = inc


def test_updates_are_applied_in_batches_by_their_own_thread() -> None:
    from sealgate.metrics import Updates

    updates = Updates(flush_seconds=0.01)
    counter, histogram = _Recording(), _Recording()
    for _ in range(5):
        updates.inc(counter)
    updates.inc(counter, 2.0)
    updates.observe(histogram, 0.5)
    updates.observe(histogram, 1.5)
    assert counter.applied.wait(30) and histogram.applied.wait(30)
    assert counter.calls == [7.0]  # one increment per counter and batch
    assert histogram.calls == [0.5, 1.5]  # every observation
    counter.applied.clear()
    updates.inc(counter)  # the flusher went idle; a new update wakes it again
    assert counter.applied.wait(30)
    assert counter.calls == [7.0, 1.0]


def test_flush_applies_pending_updates_at_once_and_a_scrape_flushes() -> None:
    from sealgate.metrics import Updates

    updates = Updates(flush_seconds=3600)
    counter = _Recording()
    updates.inc(counter, 3.0)
    updates.flush()
    assert counter.calls == [3.0]
    updates.flush()  # nothing pending: nothing applied twice
    assert counter.calls == [3.0]

    metrics = Metrics()
    metrics.updates.flush_seconds = 3600  # only the scrape below can apply it
    metrics.message("outbound", "accept", ("unsigned",), 0.2, error="notify")
    text = metrics.exposition().decode()
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "outbound", "action": "accept"}) == 1
    assert sample_value(text, "sealgate_violations_total", {"code": "unsigned"}) == 1
    assert sample_value(text, "sealgate_errors_total", {"kind": "notify"}) == 1
    assert sample_value(text, "sealgate_message_seconds_sum") == pytest.approx(0.2)


def test_a_failing_update_is_logged_and_the_flushes_go_on(caplog: pytest.LogCaptureFixture) -> None:
    from sealgate.metrics import Updates

    class Broken:
        def inc(self, amount: float) -> None:
            raise ValueError("counters can only be incremented by non-negative amounts")

    updates = Updates(flush_seconds=0.01)
    updates.inc(Broken())
    later = _Recording()
    deadline = time.monotonic() + 30
    while "metrics-flush-failed" not in caplog.text:
        assert time.monotonic() < deadline, "the failure was not logged"
        time.sleep(0.01)
    updates.inc(later, 2.0)
    assert later.applied.wait(30) and later.calls == [2.0]
