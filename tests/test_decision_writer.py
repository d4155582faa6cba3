"""The milter's background decision writer: every line written, in batches; failures counted."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from sealgate.quarantine.decisions import BufferedDecisions, DecisionWriter
from sealgate.quarantine.sqlite import SqliteQuarantine
from sealgate.quarantine.store import Decision

UTC = dt.UTC


def decision(n: int) -> Decision:
    return Decision(dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC) + dt.timedelta(seconds=n),
                    "internal", "accept", "internal", (), f"user{n}@example.com",
                    ("example.com",), None)


class CountingStore(SqliteQuarantine):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def record_decisions(self, decisions):  # noqa: ANN001, ANN201
        self.batches.append(len(decisions))
        super().record_decisions(decisions)


def test_lines_from_many_threads_are_all_written_in_few_transactions(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "q")
    errors: list[int] = []
    buffered = BufferedDecisions(store, DecisionWriter(store, on_error=lambda: errors.append(1)))

    def work(base: int) -> None:
        for i in range(250):
            buffered.record_decision(decision(base + i))

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    buffered._writer.close()  # flush, keep the store open to read it
    try:
        got = list(store.decisions())
        assert len(got) == 1000 and errors == []
        assert {d.sender for d in got} == {decision(k * 1000 + i).sender
                                           for k in range(4) for i in range(250)}
        assert sum(store.batches) == 1000
        assert len(store.batches) < 1000  # batched: fewer transactions than lines
    finally:
        store.close()


def test_a_line_after_a_quiet_spell_is_written_at_once_and_close_ends_the_gathering(
        tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "q")
    writer = DecisionWriter(store, gather=60.0)  # a busy writer would wait a minute
    started = time.monotonic()
    writer.record(decision(1))  # the writer is idle: this wakes it
    while not store.batches and time.monotonic() - started < 10:
        time.sleep(0.01)
    assert store.batches == [1]
    writer.record(decision(2))  # now it gathers: written at the next round or at close
    writer.record(decision(3))
    writer.close()
    try:
        assert time.monotonic() - started < 10
        assert store.batches == [1, 2]
        assert len(list(store.decisions())) == 3
    finally:
        store.close()


def test_close_flushes_and_closes_the_store(tmp_path: Path) -> None:
    store = SqliteQuarantine(tmp_path / "q")
    buffered = BufferedDecisions(store, DecisionWriter(store))
    buffered.record_decision(decision(1))
    assert buffered.count() == 0  # other calls reach the wrapped store
    buffered.close()
    again = SqliteQuarantine(tmp_path / "q")
    try:
        assert [d.sender for d in again.decisions()] == ["user1@example.com"]
    finally:
        again.close()


class FailingStore(SqliteQuarantine):
    def record_decisions(self, decisions):  # noqa: ANN001, ANN201
        raise OSError("disk gone")


def test_a_failing_store_counts_every_lost_line_and_keeps_going(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "q")
    errors: list[int] = []
    writer = DecisionWriter(store, on_error=lambda: errors.append(1))
    for i in range(30):
        writer.record(decision(i))
    writer.close()
    store.close()
    assert len(errors) == 30


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    stuck, gate = threading.Event(), threading.Event()

    class SlowStore(SqliteQuarantine):
        def record_decisions(self, decisions):  # noqa: ANN001, ANN201
            stuck.set()
            gate.wait(10)
            super().record_decisions(decisions)

    store = SlowStore(tmp_path / "q")
    errors: list[int] = []
    writer = DecisionWriter(store, on_error=lambda: errors.append(1), max_pending=5)
    writer.record(decision(0))
    assert stuck.wait(10)  # the writer is inside the store with one line
    for i in range(1, 41):  # returns at once although the store is stuck
        writer.record(decision(i))
    assert len(errors) == 35  # 5 fit in the queue
    gate.set()
    writer.close()
    try:
        assert len(list(store.decisions())) == 6
    finally:
        store.close()


def test_lines_made_later_are_made_by_the_writer_and_a_failing_one_is_counted(
        tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "q")
    errors: list[int] = []
    buffered = BufferedDecisions(store, DecisionWriter(store, on_error=lambda: errors.append(1)))
    made_in: list[str] = []

    def later(n: int):  # noqa: ANN202
        def make() -> Decision:
            made_in.append(threading.current_thread().name)
            if n == 2:
                raise ValueError("a verdict the report cannot read")
            return decision(n)
        return make

    for n in range(4):
        buffered.record_decision_later(later(n))
    buffered.record_decision(decision(9))  # both kinds in one queue, in order
    buffered._writer.close()
    try:
        assert [d.sender for d in store.decisions()] == [
            f"user{n}@example.com" for n in (0, 1, 3, 9)]
        assert errors == [1]  # the one that failed, counted; the others written
        assert set(made_in) == {"decision-writer"}  # never on the caller's thread
    finally:
        store.close()
