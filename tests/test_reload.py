"""SIGHUP reloads config and policy under live Postfix traffic; a bad config is refused.

The decision for a message is fixed at MAIL FROM: a session that began
before the reload is judged by the old policy even if its DATA comes after;
every message begun after the reload by the new one.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator

import pytest
from postfix_fixtures import SealgateProcess, copy_directory, mta  # noqa: F401

from sealgate import devmail as m
from sealgate.devpki import TestPKI
from sealgate.devpostfix import DevPostfix, Received

BODY = m.text_entity("Hello,\r\n\r\nreload.\r\n")

# A policy that accepts everything and says so (rule "open").
OPEN_POLICY = """\
[defaults]
action = "quarantine"
transient_action = "tempfail"

[[rules]]
name = "open"
require = []
"""


@pytest.fixture(scope="module")
def gate(mta: DevPostfix, pki: TestPKI) -> Iterator[SealgateProcess]:  # noqa: F811
    process = SealgateProcess(mta, pki, directory=copy_directory(pki, mta.base / "pub")).start()
    try:
        yield process
    finally:
        process.stop()


def plain(subject: str) -> bytes:
    return m.message(BODY, "alice@example.com", ["bob@example.com"], subject=subject)


def received(mta: DevPostfix, subject: str) -> Received:  # noqa: F811
    def find() -> Received | None:
        return next((r for r in list(mta.sink.messages) if subject in r.header("Subject")), None)

    mta.wait_for(find, f"delivery of {subject!r}")
    found = find()
    assert found is not None
    return found


def wait_for_log(gate: SealgateProcess, mta: DevPostfix, text: str, count: int = 1) -> None:  # noqa: F811
    mta.wait_for(lambda: sum(text in str(r.get("msg", "")) for r in gate.log_records()) >= count,
                 f"{text!r} in the sealgate log {gate.log}")


def decision(gate: SealgateProcess, queue_id: str) -> tuple[str, str]:
    line = gate.message_record(queue_id)
    return line["rule"], line["action"]


def test_sighup_swaps_the_policy_only_for_mail_begun_after_it(mta, gate, pki):  # noqa: F811
    before = mta.send(plain("reload before"), "alice@example.com", ["bob@example.com"])
    assert before.code == 250
    assert decision(gate, mta.queue_id(before)) == ("internal", "quarantine")

    # A session in flight across the reload: MAIL FROM before, DATA after.
    inflight = smtplib.SMTP("127.0.0.1", mta.smtp_port, local_hostname="client.test", timeout=60)
    try:
        inflight.ehlo()
        assert inflight.mail("alice@example.com")[0] == 250
        assert inflight.rcpt("bob@example.com")[0] == 250

        (gate.folder / "open.toml").write_text(OPEN_POLICY)
        config = gate.config.read_text()
        gate.config.write_text(config.replace(
            config[config.index("[policy]"):], f'[policy]\nfile = "{gate.folder / "open.toml"}"\n'))
        gate.hup()
        wait_for_log(gate, mta, "event=reload generation=1")

        code, text = inflight.data(plain("reload inflight"))
        assert code == 250
        inflight_id = text.decode().rsplit(" ", 1)[-1]
    finally:
        inflight.quit()
    assert decision(gate, inflight_id) == ("internal", "quarantine")  # the old policy

    after = mta.send(plain("reload after"), "alice@example.com", ["bob@example.com"])
    assert after.code == 250
    assert decision(gate, mta.queue_id(after)) == ("open", "accept")
    assert received(mta, "reload after").header("Sealgate-Policy") == [
        "rule=open; action=accept; codes=none"]
    assert gate.proc is not None and gate.proc.poll() is None


def test_a_bad_config_is_refused_and_the_running_one_kept(mta, gate):  # noqa: F811
    first = mta.send(plain("reload kept 1"), "alice@example.com", ["bob@example.com"])
    running = decision(gate, mta.queue_id(first))
    good = gate.config.read_text()
    gate.config.write_text(good.replace('authserv_id = "mx.example.com"\n',
                                        'authserv_id = "mx.example.com"\nbogus_key = 1\n'))
    gate.config.with_name("open.toml").write_text(OPEN_POLICY)  # what a good reload would load
    try:
        gate.hup()
        wait_for_log(gate, mta, "event=reload-refused")
    finally:
        gate.config.write_text(good)
    (refused,) = [r for r in gate.log_records() if "event=reload-refused" in str(r.get("msg"))]
    assert refused["level"] == "error"
    assert f"{gate.config}: bogus_key" in refused["msg"]  # the error names file and key
    second = mta.send(plain("reload kept 2"), "alice@example.com", ["bob@example.com"])
    assert second.code == 250
    assert decision(gate, mta.queue_id(second)) == running
    assert gate.proc is not None and gate.proc.poll() is None


def test_reload_under_concurrent_traffic_drops_nothing(mta, gate):  # noqa: F811
    results: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(5):
            r = mta.send(plain(f"burst {n}.{i}"), "alice@example.com", ["bob@example.com"])
            with lock:
                results.append(r.code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for k in (4, 8, 12):  # reload while messages are being sent
        gate.hup()
        mta.wait_for(lambda k=k: len(results) >= k, f"{k} messages answered")
    for t in threads:
        t.join()
    assert results == [250] * 20
    assert gate.proc is not None and gate.proc.poll() is None


# ---------------------------------------------------------------- the swap itself


def test_reload_swaps_anchors_crls_and_directory_settings(pki, tmp_path):
    import shutil

    from gateway_helpers import write_config

    from sealgate.engine import load_gateway
    from sealgate.metrics import Metrics
    from sealgate.milter_app import Live, reload_gateway

    site = tmp_path / "site"
    config = write_config(site, pki)
    live = Live(load_gateway(config))
    old = live.gateway
    moved = shutil.copytree(pki.directory, tmp_path / "published-elsewhere")
    write_config(site, pki, directory=moved)  # the administrator edits the file
    text = config.read_text()
    config.write_text(text.replace(f'anchors = ["{pki.ca.cert_path}"]',
                                   f'anchors = ["{pki.ca.cert_path}", "{pki.other_ca.cert_path}"]'))
    metrics = Metrics()
    assert reload_gateway(live, lambda: load_gateway(config), metrics)
    new = live.gateway
    assert new is not old and live.generation == 1
    assert new.directory.inner.folder == moved  # wrapped for the metrics, same answers
    assert len(new.trust.anchors) == 2 and len(old.trust.anchors) == 1
    assert new.current_trust().crl_next_updates()  # CRLs read anew

    config.write_text("this is = not [toml\n")
    assert not reload_gateway(live, lambda: load_gateway(config), metrics)
    assert live.gateway is new and live.generation == 1
    assert b'sealgate_errors_total{kind="reload"} 1.0' in metrics.exposition()
