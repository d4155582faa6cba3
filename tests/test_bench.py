"""The benchmark code runs on tiny inputs and prints well-formed tables (never asserts times)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from need import need
from postfix_fixtures import require_postfix

from sealgate.devsofthsm import available as softhsm_available

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `bench` is a folder of the repository, not an installed package
    sys.path.insert(0, str(REPO))

from bench import __main__ as bench_main  # noqa: E402
from bench import (  # noqa: E402
    check_rate,
    cold_path,
    inputs,
    milter_direct,
    milter_memory,
    milters,
    through_postfix,
)
from bench.timing import median, percentile  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
    assert median([1.0, 3.0, 2.0]) == 2.0


def test_sizes_parse_decimal_and_binary_units() -> None:
    assert check_rate.parse_sizes("10KB,1MB, 25MB") == [10_000, 1_000_000, 25_000_000]
    assert check_rate.parse_sizes("64KiB") == [65536]


def test_inputs_have_the_asked_size_and_shape(pki) -> None:
    raw = inputs.triple_wrapped(pki, 12 * inputs.KB)  # signatures and certificates take 8 KB
    assert abs(len(raw) - 12 * inputs.KB) <= 12 * inputs.KB * 0.03
    assert b"multipart/signed" in raw and b"\r\n" in raw
    assert b"pkcs7" not in inputs.plain(3 * inputs.KB)


def test_offline_engine_rows_and_targets() -> None:
    result = check_rate.measure([12 * inputs.KB], 0.05, seal=False, log=lambda _text: None)
    kinds = [(row.kind, row.action) for row in result.rows]
    assert kinds == [("triple-wrapped", "accept"), ("plain", "quarantine")]
    for row in result.rows:
        assert row.engine_s > 0 and row.hash_s > 0
    triple = result.rows[0]
    assert triple.openssl_s is not None and triple.openssl_s > 0
    assert result.rsa_verify_s > 0 and result.openssl_start_s > 0
    table = check_rate.report(result)
    assert "triple-wrapped" in table and "plain" in table and "RSA-2048 verify" in table
    targets = bench_main.offline_targets(result)
    assert [t.ok for t in targets][1] is None  # no 25 MB message in this run: not judged
    assert all(t.line().split()[0] in ("PASS", "MISS", "n/a") for t in targets)


@pytest.mark.slow
def test_offline_engine_judges_messages_made_by_sealgate_seal() -> None:
    need(softhsm_available())
    result = check_rate.measure([12 * inputs.KB], 0.05, plain=False, log=lambda _text: None)
    assert result.notes == []
    assert [(row.kind, row.action) for row in result.rows] == [("triple-wrapped", "accept"),
                                                             ("sealgate seal", "accept")]
    assert result.rows[1].openssl_s is not None  # openssl verifies what sealgate seal made


def test_timing_wrapper_keeps_pymilter_protocol_and_writes_times(tmp_path: Path) -> None:
    class Probe(milters.NoopMilter):
        pass

    before = Probe.header.milter_protocol  # type: ignore[attr-defined]
    log_path = tmp_path / "times"
    timing_log = milters.TimingLog(log_path)
    milters.instrument(Probe, timing_log)
    assert Probe.header.milter_protocol == before  # type: ignore[attr-defined]
    probe = Probe()
    probe._protocol = 0  # set by pymilter's negotiate on a real connection
    probe.header("Subject", "x")
    probe.body(b"hello\r\n")
    assert probe.eom() == milters.Milter.ACCEPT
    probe.eom()  # eom without a header: timed from eom itself
    timing_log.close()
    milter_s, eom_s = milters.read_times(log_path)
    assert len(milter_s) == len(eom_s) == 2
    assert all(m >= e >= 0 for m, e in zip(milter_s, eom_s, strict=True))


def test_memory_run_reports_peaks() -> None:
    result = milter_memory.measure(0.3, 2, 0.1, log=lambda _text: None)
    assert result.outcomes == ["delivered"] * 4  # warm-up, the big one, two at once
    assert result.idle_kib > 0
    assert result.big_peak_kib >= result.idle_kib
    assert result.concurrent_peak_kib >= result.big_peak_kib  # VmHWM never goes down
    assert "over idle" in milter_memory.report(result)
    assert bench_main.memory_targets(result)[0].ok is not None


def test_cold_path_replays_whole_messages_on_both_milters(tmp_path: Path) -> None:
    rows = cold_path.measure(10 * inputs.KB, 5, 2, tmp_path)  # each step checks its answer
    assert [r.what for r in rows] == ["verdict", "sealgate milter", "no-op milter"]
    for row in rows:
        assert len(row.warm) == len(row.cold) == 2 and min(row.warm + row.cold) > 0
    text = cold_path.report(10 * inputs.KB, rows)
    assert "sealgate's own work, cold" in text and "no-op milter" in text
    lines = (tmp_path / "milter.log").read_text().splitlines()
    # Every replayed sealgate message was logged as accepted (warm-up, 2 blocks warm and cold).
    assert sum(" action=accept " in line for line in lines) == 50 + 2 * 5 * 2


def test_conversation_splits_a_message_as_postfix_sends_it() -> None:
    raw = b"From: a@example.com\r\nSubject: one\r\n two\r\n\r\nbody\r\n"
    c = cold_path.Conversation.of(raw, "a@example.com", ("b@example.com",))
    assert c.headers == (("From", b"a@example.com"), ("Subject", b"one\n two"))
    assert (c.sender, c.recipients, c.body) == (b"<a@example.com>", (b"<b@example.com>",), b"body\r\n")


def test_direct_milter_run_reports_cpu_per_message_beside_the_noop() -> None:
    # CPU is read from /proc in clock ticks (10 ms, sampled): 150 messages are about 7 ticks
    # of sealgate CPU; 40 (about 2) read as 0 once in a full-suite run.
    result = milter_direct.measure(150, 10 * inputs.KB, runs=1)
    assert result.outcomes == ("delivered",)  # accepted: the timed path is the full verdict
    assert result.noop.outcomes == {"delivered"}
    # CPU comes from /proc in clock ticks: the no-op may use less than one in a short run
    assert result.cpu_ms > 0 and result.wall_ms > 0 and result.noop.cpu >= 0 < result.noop.wall
    assert len(result.sealgate.cpu_ms) == len(result.noop.cpu_ms) == 1
    assert "no-op" in milter_direct.report(result)


@pytest.mark.slow
def test_postfix_runs_every_setup_and_sealgate_accepts_all() -> None:
    require_postfix()
    setups = ("no milter", "no-op milter", "sealgate files")
    size, rows = through_postfix.measure(12 * inputs.KB, messages=10, sessions=2, runs=1,
                                         setups=setups, log=lambda _text: None)
    assert size > 0
    assert [row.setup for row in rows] == list(setups)
    for row in rows:
        assert len(row.runs) == 1 and row.runs[0] > 0, row.note
        assert row.note == ""  # sealgate logged every message as accepted
    assert rows[0].judged == 0 and not rows[0].p50  # no milter, nothing timed
    for row in rows:  # the whole machine's CPU per message: Postfix's share at least
        assert len(row.machine) == 1 and row.machine[0] >= 0
    for row in rows[1:]:
        assert row.judged == 10 and row.p50 and row.p99[0] >= row.p50[0]
        assert row.mean[0] >= row.p50[0] / 2 > 0  # half the times are at least the median
        assert row.cpu[0] >= 0  # /proc counts CPU in clock ticks: 10 messages may show none
    table = bench_main.postfix_table(size, rows)
    assert all(setup in table for setup in setups)
    assert bench_main.postfix_targets(rows)[0].ok is not None


def test_postfix_target_shows_the_share_run_by_run() -> None:
    rows = [through_postfix.PostfixRow("no-op milter", runs=[600.0, 500.0, 550.0]),
            through_postfix.PostfixRow("sealgate files", runs=[480.0, 450.0, 440.0])]
    [target] = bench_main.postfix_targets(rows)
    # medians 450 / 550 = 82%; run by run 80%, 90%, 80%
    assert target.ok is False
    assert target.measured == "82% (450 vs 550 msgs/s; run by run 80-90%, median 80%)"


def test_make_bench_prints_one_table_with_targets(capsys: pytest.CaptureFixture[str]) -> None:
    status = bench_main.main(["--quick", "--only", "offline", "--sizes", "12KB", "--seconds", "0.05"])
    assert status == 0
    out = capsys.readouterr().out
    assert "1. Offline engine" in out and "Targets" in out
    verdicts = [line.split()[0] for line in out.split("Targets", 1)[1].splitlines()
                if line.strip() and not line.startswith("(")]
    assert verdicts and set(verdicts) <= {"PASS", "MISS", "n/a"}


def test_a_setup_that_did_not_accept_everything_says_what_it_logged(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(through_postfix, "KEPT_LOGS", tmp_path / "kept")
    log = tmp_path / "milter.log"
    log.write_text(
        "2026-11-25 10:00:00,000 sealgate[1] INFO sealgate.milter: message queue_id=A action=accept size=1\n"
        "2026-11-25 10:00:00,001 sealgate[1] INFO sealgate.milter: message queue_id=B action=tempfail "
        "size=1 error=check-failed\n"
        "2026-11-25 10:00:00,002 sealgate[1] ERROR sealgate.milter: cannot check message queue_id=B: boom\n")
    running = through_postfix._Running(through_postfix.PostfixRow("sealgate ldap"), None,  # type: ignore[arg-type]
                                       None, tmp_path / "times", log)
    note = through_postfix._keep_log(running)
    assert "1 x action=tempfail error=check-failed" in note
    assert "1 x cannot check message queue_id=B: boom" in note
    [kept] = (tmp_path / "kept").iterdir()
    assert kept.read_text() == log.read_text() and kept.name.endswith("-sealgate-ldap.log")
