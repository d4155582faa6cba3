"""The milter records every decision for the report, and a failed record fails nothing.

Driven through pymilter's TestCtx with the helpers of test_milter (fake
gateway returning a chosen verdict, exact bytes through the callbacks); the
store is the real SQLite store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import Milter
import pytest
import test_milter as tm

from sealgate import milter_app
from sealgate.codes import Action, Code
from sealgate.errors import StoreError
from sealgate.metrics import Metrics
from sealgate.model import Envelope
from sealgate.quarantine import Decision, SqliteQuarantine
from sealgate.quarantine.decisions import BufferedDecisions, DecisionWriter

_pristine_pymilter = tm._pristine_pymilter  # autouse: a fresh pymilter factory per test


class NoDecisions(SqliteQuarantine):
    def record_decision(self, decision: Decision) -> None:
        raise StoreError(f"quarantine index {self.index}: database or disk is full")


class NoStore(SqliteQuarantine):
    def put(self, *args: Any, **kw: Any) -> str:
        raise StoreError(f"cannot write the message file {self.messages}/x.eml: No space left")


def _connect(gateway: Any, store: Any, metrics: Metrics | None = None,
             outcomes: Any = None) -> Any:
    milter_app.install(gateway, store, milter_app.Tracker(), metrics=metrics, outcomes=outcomes)
    ctx = tm.Ctx([])
    assert ctx._connect(host="mail.client.test", ip="192.0.2.7") == Milter.CONTINUE
    return ctx


def test_every_verdict_is_recorded_without_content(tmp_path: Path) -> None:
    store = SqliteQuarantine(tmp_path / "q")
    try:
        for action, codes in ((Action.ACCEPT, ()), (Action.REJECT, (Code.MALFORMED,)),
                              (Action.QUARANTINE, (Code.UNSIGNED,))):
            ctx = _connect(tm.FakeGateway(tm.make_verdict(action, *codes)), store)
            tm.send(ctx, queue_id=f"Q{action}")
        got = list(store.decisions())
        (held,) = store.list()
    finally:
        store.close()
    assert [(d.action, d.codes) for d in got] == [("accept", ()), ("reject", ("malformed",)),
                                                  ("quarantine", ("unsigned",))]
    assert got[2].quarantine_id == held.id and got[0].quarantine_id is None
    assert all(d.sender == "alice@example.com" and d.recipient_domains == ("example.com",)
               for d in got)


@pytest.mark.parametrize("with_outcomes", [False, True], ids=["in-callback", "outcome-thread"])
def test_through_the_buffered_writer_the_lines_are_the_same(tmp_path: Path,
                                                            with_outcomes: bool) -> None:
    # As `sealgate milter` runs: the line is made by the writer thread from the
    # verdict's parts (handed over by the outcome thread); it must equal what
    # Decision.of makes from the verdict.
    store = SqliteQuarantine(tmp_path / "q")
    buffered = BufferedDecisions(store, DecisionWriter(store))
    outcomes = milter_app.outcome_thread(None) if with_outcomes else None
    made: list[Decision] = []
    try:
        for action, codes in ((Action.ACCEPT, ()), (Action.REJECT, (Code.MALFORMED,)),
                              (Action.QUARANTINE, (Code.UNSIGNED, Code.UNENCRYPTED))):
            verdict = tm.make_verdict(action, *codes)
            before = dt.datetime.now(dt.UTC)
            ctx = _connect(tm.FakeGateway(verdict), buffered, outcomes=outcomes)
            tm.send(ctx, queue_id=f"Q{action}", rcpts=("<bob@Example.COM>", "<x@partner.example>"))
            made.append(Decision.of(verdict, Envelope("alice@example.com",
                                                      ("bob@Example.COM", "x@partner.example")),
                                    action=str(action), at=before))
        if outcomes is not None:
            outcomes.close()  # makes what waits
        buffered._writer.close()  # writes what waits; the store stays open
        got = list(store.decisions())
        (held,) = store.list()
    finally:
        store.close()
    assert len(got) == 3
    for line, expected in zip(got, made, strict=True):
        assert 0 <= (line.at - expected.at).total_seconds() < 5
        assert dataclasses.replace(line, at=expected.at, quarantine_id=None) == expected
    assert got[2].quarantine_id == held.id and got[2].codes == ("unencrypted", "unsigned")
    assert got[0].recipient_domains == ("example.com", "partner.example")


def test_a_failed_decision_record_does_not_fail_a_healthy_accept(tmp_path: Path) -> None:
    store = NoDecisions(tmp_path / "q")
    metrics = Metrics()
    try:
        ctx = _connect(tm.FakeGateway(tm.make_verdict(Action.ACCEPT)), store, metrics)
        assert tm.send(ctx) == Milter.CONTINUE
        ctx = _connect(tm.FakeGateway(tm.make_verdict(Action.QUARANTINE, Code.UNSIGNED)), store,
                       metrics)
        assert tm.send(ctx) == Milter.DISCARD  # held in the store: the message itself is safe
        assert store.count("held") == 1
    finally:
        store.close()
    metrics.flush()  # counts are applied in batches (sealgate.metrics.Updates)
    assert metrics.errors.labels(kind="decision-record")._value.get() == 2


def test_a_failed_quarantine_store_still_tempfails_and_is_recorded_as_tempfail(
        tmp_path: Path) -> None:
    store = NoStore(tmp_path / "q")
    try:
        ctx = _connect(tm.FakeGateway(tm.make_verdict(Action.QUARANTINE, Code.UNSIGNED)), store)
        assert tm.send(ctx) == Milter.TEMPFAIL
        (decision,) = store.decisions()
    finally:
        store.close()
    assert (decision.action, decision.quarantine_id) == ("tempfail", None)


def test_the_outcome_thread_makes_line_count_and_row_and_survives_a_failure(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    made_in: list[str] = []
    message_done = milter_app.message_done

    def recorded(*args: Any) -> None:
        made_in.append(threading.current_thread().name)
        message_done(*args)

    monkeypatch.setattr(milter_app, "message_done", recorded)
    store = SqliteQuarantine(tmp_path / "q")
    metrics = Metrics()
    outcomes = milter_app.outcome_thread(metrics)
    try:
        ctx = _connect(tm.FakeGateway(tm.make_verdict(Action.ACCEPT)), store, metrics, outcomes)
        answered = time.time()
        assert tm.send(ctx, queue_id="QOUT1") == Milter.CONTINUE
        outcomes.record(lambda: 1 / 0)  # a failing one: logged, the others still made
        ctx = _connect(tm.FakeGateway(tm.make_verdict(Action.ACCEPT)), store, metrics, outcomes)
        assert tm.send(ctx, queue_id="QOUT2") == Milter.CONTINUE
        outcomes.close()
        rows = list(store.decisions())
    finally:
        store.close()
    lines = [r for r in caplog.records if r.getMessage().startswith("message ")]
    assert ["queue_id=QOUT1" in lines[0].getMessage(), "queue_id=QOUT2" in lines[1].getMessage()] \
        == [True, True]
    assert made_in == ["message-outcomes"] * 2  # not the message's thread
    assert answered - 5 < lines[0].created <= lines[1].created  # stamped when decided
    assert "event=message-outcome-failed" in caplog.text
    assert [r.action for r in rows] == ["accept", "accept"]
    metrics.flush()
    assert metrics.messages.labels("internal", "accept")._value.get() == 2


def test_a_full_outcome_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    outcomes = milter_app.outcome_thread(metrics)
    outcomes.max_pending = 0  # full from the start
    made: list[int] = []
    outcomes.record(lambda: made.append(1))
    outcomes.close()
    metrics.flush()
    assert made == []
    assert metrics.errors.labels(kind="decision-record")._value.get() == 1
    assert "event=message-outcome-dropped" in caplog.text
