"""``[milter] workers = N``: N milter processes on one socket under a supervisor.

Real processes: ``sealgate milter`` with two workers on a unix socket, spoken
to over the milter protocol (:mod:`sealgate.milterclient`), scraped over
HTTP. The supervisor's restart rules are also tested on their own, with
forked children that exit at once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gateway_helpers import write_config
from postfix_fixtures import sample_value

from sealgate import devmail as m
from sealgate import workers
from sealgate.config import load_config
from sealgate.devpki import TestPKI
from sealgate.devpostfix import free_port
from sealgate.milterclient import MilterClient, MilterProcess, children_of, split_message

BODY = m.text_entity("Hello,\r\n\r\nworkers.\r\n")
SENDER, RCPT = "alice@example.com", "bob@example.com"


class Gate:
    """``sealgate milter`` with ``workers`` processes, metrics on a free port, JSON log."""

    def __init__(self, folder: Path, pki: TestPKI, count: int = 2, extra: str = "") -> None:
        self.port = free_port()
        self.socket = folder / "sealgate.sock"
        self.config = write_config(folder, pki)
        text = self.config.read_text()
        text = text.replace("[milter]\n", f'[milter]\nworkers = {count}\n{extra}')
        text = text.replace('listen = ""', f'listen = "127.0.0.1:{self.port}"')
        self.config.write_text(text.replace(f'socket = "unix:{folder}/sealgate.sock"',
                                            f'socket = "unix:{self.socket}"'))
        assert load_config(self.config).milter.workers == count
        self.log = folder / "sealgate.log"
        self.process = MilterProcess(self.config, self.socket, self.log, "--log-format", "json")
        self.count = count
        if count > 1:
            wait_until(lambda: len(self.workers()) == count, "the workers to start")
            wait_until(lambda: self.log_count("event=worker-ready") >= count,
                       "the workers to be ready")

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> set[int]:
        return children_of(self.pid)

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def log_count(self, text: str) -> int:
        return sum(text in str(r.get("msg", "")) for r in self.records())

    def held_count(self) -> float:
        """sealgate_messages_total for internal mail quarantined, as scraped now."""
        return sample_value(self.scrape()[1], "sealgate_messages_total",
                            {"direction": "internal", "action": "quarantine"})

    def scrape(self, path: str = "/metrics") -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def send(self, subject: str = "hello") -> str:
        raw = m.message(BODY, SENDER, [RCPT], subject=subject)
        return self.process.send(raw, SENDER, [RCPT]).outcome


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(params=[2])
def gate(request, tmp_path: Path, pki: TestPKI) -> Iterator[Gate]:
    g = Gate(tmp_path, pki, request.param)
    try:
        yield g
    finally:
        if g.process.proc.poll() is None:
            g.process.stop()


def test_the_workers_share_the_socket_and_the_counts_add_up(gate: Gate) -> None:
    # Plain mail from inside is held by strict.toml: each quarantined, so each
    # message is a real verdict and a store write in whichever worker took it.
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: gate.send(f"m{i}"), range(40)))
    assert set(outcomes) == {"held"}, outcomes
    # The per-message lines are written in batches, up to FLUSH_SECONDS late.
    wait_until(lambda: sum(r.get("msg") == "message" for r in gate.records()) == 40,
               "the 40 message lines")
    served_by = {r["pid"] for r in gate.records() if r.get("msg") == "message"}
    assert served_by <= gate.workers() and len(served_by) == 2, (served_by, gate.workers())
    assert gate.pid not in served_by  # the supervisor judges nothing
    # Each worker applies its counts in batches, up to metrics.FLUSH_SECONDS late.
    wait_until(lambda: gate.held_count() == 40, "the workers' counts of 40 messages")
    status, text = gate.scrape()
    assert status == 200
    assert sample_value(text, "sealgate_messages_total",
                        {"direction": "internal", "action": "quarantine"}) == 40
    assert sample_value(text, "sealgate_message_seconds_count") == 40
    assert sample_value(text, "sealgate_violations_total", {"code": "unsigned"}) == 40
    # Gauges are the gateway's state, read once by the supervisor: no per-process copies.
    assert sample_value(text, "sealgate_quarantine_messages") == 40
    assert [line for line in text.splitlines()
            if line.startswith("sealgate_quarantine_messages")] == ["sealgate_quarantine_messages 40.0"]
    assert "pid=" not in text
    assert gate.scrape("/healthz") == (200, "ok\n")


def test_a_dead_worker_is_replaced_and_its_counts_stay(gate: Gate) -> None:
    assert gate.send("before") == "held"
    # Counted once applied (at most metrics.FLUSH_SECONDS later): what a worker killed
    # outright has not applied yet is lost, what it has applied stays.
    wait_until(lambda: gate.held_count() == 1, "the first message counted")
    victim = min(gate.workers())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in gate.workers() and len(gate.workers()) == 2,
               "a new worker in place of the killed one")
    died = [r for r in gate.records() if "event=worker-died" in str(r["msg"])]
    assert len(died) == 1 and f"pid={victim}" in str(died[0]["msg"])
    assert "signal 9" in str(died[0]["msg"])
    for i in range(10):  # every message still judged, by whichever worker takes it
        assert gate.send(f"after {i}") == "held"
    wait_until(lambda: gate.held_count() >= 11, "the counts of 11 messages")
    assert gate.held_count() == 11


def test_sighup_reloads_the_supervisor_and_every_worker(gate: Gate) -> None:
    os.kill(gate.pid, signal.SIGHUP)
    wait_until(lambda: gate.log_count("event=reload ") >= 3, "three reloads")
    reloaded = {r["pid"] for r in gate.records() if "event=reload " in str(r["msg"])}
    assert reloaded == gate.workers() | {gate.pid}
    # A configuration that does not load is refused by each; all keep serving.
    good = gate.config.read_text()
    gate.config.write_text(good.replace("[milter]\n", "[milter]\nbogus = 1\n"))
    os.kill(gate.pid, signal.SIGHUP)
    wait_until(lambda: gate.log_count("event=reload-refused") >= 3, "three refusals")
    assert gate.send("still") == "held"
    assert gate.workers() and all(alive(p) for p in gate.workers())


@pytest.mark.parametrize("gate", [1, 2], indirect=True, ids=["1 process", "2 workers"])
def test_sigterm_finishes_the_message_in_flight_then_everything_exits(gate: Gate) -> None:
    reached, go = threading.Event(), threading.Event()

    class Paused(MilterClient):
        def _step(self, cmd: bytes, data: bytes, no_reply_flag: int):  # type: ignore[no-untyped-def]
            if cmd == b"B" and not reached.is_set():  # the body: wait for the test's go
                reached.set()
                assert go.wait(20)
            return super()._step(cmd, data, no_reply_flag)

    outcome: list[str] = []

    def send() -> None:
        headers, body = split_message(m.message(BODY, SENDER, [RCPT], subject="in flight"))
        with Paused(f"unix:{gate.socket}", timeout=30) as client:
            client.negotiate()
            outcome.append(client.send_message(SENDER, [RCPT], headers, body).outcome)

    sender = threading.Thread(target=send)
    sender.start()
    assert reached.wait(20)
    pids = gate.workers()
    os.kill(gate.pid, signal.SIGTERM)
    time.sleep(0.5)  # the stop has begun while the message waits
    go.set()
    sender.join(30)
    assert outcome == ["held"]  # judged and stored, not cut off
    assert gate.process.proc.wait(30) == 0
    assert not any(alive(p) for p in pids)
    assert gate.log_count("event=worker-stopped") == len(pids)


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(gate: Gate) -> None:
    pids = gate.workers()
    os.kill(gate.pid, signal.SIGKILL)
    gate.process.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), "the orphaned workers to exit", 30)
    assert gate.log_count("event=supervisor-gone") == 2


def test_workers_must_be_a_small_positive_number(tmp_path: Path, pki: TestPKI) -> None:
    config = write_config(tmp_path, pki)
    for bad in ("0", "65", "true", '"2"', "1.5"):
        config.write_text(config.read_text().replace("[milter]\n", f"[milter]\nworkers = {bad}\n", 1))
        with pytest.raises(Exception, match=r"milter\.workers"):
            load_config(config)
        config.write_text(config.read_text().replace(f"workers = {bad}\n", ""))
    assert load_config(config).milter.workers == 1  # the default: one process


# ---------------------------------------------------------------- restart rules


def test_a_worker_that_keeps_dying_at_start_makes_the_supervisor_give_up(monkeypatch) -> None:
    monkeypatch.setattr(workers, "FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(workers, "MAX_BACKOFF", 0.04)
    supervisor = workers.Supervisor(1, lambda number: 3)  # the child exits 3 at once
    supervisor.start_all()
    delays = []
    deadline = time.monotonic() + 30
    while not supervisor.failed:
        assert time.monotonic() < deadline
        supervisor.reap(stopping=False)
        delays += [when - time.monotonic() for when in supervisor.due.values()]
        supervisor.restart_due()
        time.sleep(0.005)
    assert "status 3" in supervisor.failed and "5 quick exits" in supervisor.failed
    assert not supervisor.workers


def test_a_worker_that_ran_a_while_is_restarted_at_once(monkeypatch) -> None:
    monkeypatch.setattr(workers, "STARTUP_SECONDS", 0.0)  # every exit counts as after a while
    monkeypatch.setattr(workers, "FIRST_BACKOFF", 0.01)
    supervisor = workers.Supervisor(2, lambda number: 0)
    supervisor.start_all()
    started = 2
    deadline = time.monotonic() + 30
    while started < 12:
        assert time.monotonic() < deadline
        supervisor.reap(stopping=False)
        before = len(supervisor.workers)
        supervisor.restart_due()
        started += len(supervisor.workers) - before
        time.sleep(0.005)
    assert not supervisor.failed and supervisor.quick_deaths == 0
    supervisor.stop(5)
    assert not supervisor.workers


def allowed_cpus(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def test_pinned_workers_each_stay_on_a_cpu_of_their_own(tmp_path: Path, pki: TestPKI) -> None:
    mine = sorted(os.sched_getaffinity(0))
    gate = Gate(tmp_path, pki, 2, "pin_workers = true\n")
    try:
        ready = {r["pid"]: r for r in gate.records()
                 if str(r.get("msg", "")).startswith("event=worker-ready")}
        assert set(ready) == gate.workers()
        pinned = {pid: allowed_cpus(pid) for pid in gate.workers()}
        assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
        # Round robin over the CPUs the supervisor may use: worker 1 on the first, 2 on the next.
        assert sorted(next(iter(c)) for c in pinned.values()) == sorted(
            mine[n % len(mine)] for n in range(2))
        for pid, cpus in pinned.items():
            assert f"cpu={next(iter(cpus))}" in str(ready[pid]["msg"])
        assert allowed_cpus(gate.pid) == set(mine)  # the supervisor itself is not pinned
        # A replacement worker gets its predecessor's CPU.
        victim = next(iter(pinned))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(gate.workers() - {victim}) == 2, "a replacement worker")
        replacement = next(iter(gate.workers() - set(pinned)))
        wait_until(lambda: gate.log_count("event=worker-ready") >= 3, "the replacement to be ready")
        assert allowed_cpus(replacement) == pinned[victim]
        assert gate.send("pinned") == "held"
    finally:
        gate.process.stop()


def test_workers_are_not_pinned_by_default(gate: Gate) -> None:
    mine = os.sched_getaffinity(0)
    assert all(allowed_cpus(pid) == mine for pid in gate.workers())
    assert all("cpu=-" in str(r["msg"]) for r in gate.records()
               if str(r.get("msg", "")).startswith("event=worker-ready"))


def test_a_cpu_that_cannot_be_had_leaves_the_worker_unpinned(caplog) -> None:
    before = os.sched_getaffinity(0)
    assert workers._pin(1, [4095]) is None  # no such CPU: refused, nothing changed
    assert os.sched_getaffinity(0) == before
    assert "event=worker-not-pinned worker=1 cpu=4095" in caplog.text


def test_pin_workers_must_be_true_or_false(tmp_path: Path, pki: TestPKI) -> None:
    config = write_config(tmp_path, pki)
    assert load_config(config).milter.pin_workers is False
    config.write_text(config.read_text().replace("[milter]\n", '[milter]\npin_workers = "yes"\n'))
    with pytest.raises(Exception, match="pin_workers"):
        load_config(config)
