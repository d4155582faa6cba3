"""Milter threads judging messages at once get the verdict one thread gets alone.

The milter judges the messages of its connections in threads (libmilter), and
the parsed certificates are shared between them: the signers' certificates,
the directory's, the trust anchors. asn1crypto parses on first access and
builds its caches in steps, so two threads reading a fresh certificate at once
could see each other's half-built state. Before ``certs.settle`` the first
messages of a worker were judged ``malformed`` (a field "not present") or
``untrusted-signer`` (an empty key usage, a chain signature that "could not be
verified"), and the wrong path answer stayed cached: every later message of
that worker was quarantined (seen under Postfix load, then reproduced here in
seven of eight runs).

Each run is a fresh interpreter (the shared certificates and the caches start
empty, as in a new worker) whose threads start together on the same messages,
with the interpreter switching threads every microsecond instead of every
5 ms so that they interleave inside the parsing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from directory_fixtures import ldap_config, slapd  # noqa: F401 -- the ldap runs use slapd
from gateway_helpers import write_config

from sealgate import devmail as m
from sealgate.devpki import TestPKI

RUNS = {"files": 6, "ldap": 3}  # a fresh interpreter each
THREADS = 8
ROUNDS = 3

CHILD = r"""
import io, json, sys, threading
from pathlib import Path
from sealgate.engine import load_gateway
from sealgate.model import Envelope

config, folder = Path(sys.argv[1]), Path(sys.argv[2])
messages = [(json.loads((folder / f"{i}.json").read_text()), (folder / f"{i}.eml").read_bytes())
            for i in range(2)]
sys.setswitchinterval(1e-6)
gateway = load_gateway(config)
start = threading.Barrier(int(sys.argv[3]))
seen, lock = [], threading.Lock()

def judge(which):
    envelope, raw = messages[which]
    verdict = gateway.evaluate(io.BytesIO(raw), Envelope(envelope[0], tuple(envelope[1])))
    return [str(verdict.action), sorted(f"{f.code}: {f.detail}" for f in verdict.violations)]

def work(number):
    start.wait()
    for round in range(int(sys.argv[4])):
        try:
            got = judge((number + round) % 2)
        except Exception as exc:
            got = ["exception", [repr(exc)]]
        with lock:
            seen.append(got)

threads = [threading.Thread(target=work, args=(n,)) for n in range(int(sys.argv[3]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
seen.extend(judge(which) for which in range(2))  # and alone, afterwards: nothing cached wrong
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def messages(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("threads")
    pairs = [("alice", "bob"), ("bob", "alice")]  # two signers, two recipients' certificates
    for index, (sender, rcpt) in enumerate(pairs):
        entity = m.triple_wrap(b"Content-Type: text/plain\r\n\r\nat once\r\n",
                               pki[sender], [pki[rcpt], pki[sender]])
        raw = m.message(entity, pki[sender].email, [pki[rcpt].email])
        (folder / f"{index}.eml").write_bytes(raw)
        (folder / f"{index}.json").write_text(json.dumps([pki[sender].email, [pki[rcpt].email]]))
    return folder


@pytest.fixture(scope="module")
def configs(request: pytest.FixtureRequest, pki: TestPKI,
            tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The gateway configuration for a directory backend, written once per backend."""
    made: dict[str, Path] = {}

    def config(backend: str) -> Path:
        if backend not in made:
            folder = tmp_path_factory.mktemp(f"threads-{backend}")
            if backend == "files":
                made[backend] = write_config(folder, pki)
            else:  # the directory's certificates come from a real slapd
                server = request.getfixturevalue("slapd")
                made[backend] = ldap_config(folder, pki, server.url, server.people_dn)
        return made[backend]

    return config


@pytest.mark.parametrize(("backend", "run"),
                         [(backend, run) for backend, runs in RUNS.items() for run in range(runs)])
def test_threads_judging_a_fresh_worker_s_first_messages_all_accept(configs, messages, backend, run):
    done = subprocess.run([sys.executable, "-c", CHILD, str(configs(backend)), str(messages),
                           str(THREADS), str(ROUNDS)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen) == THREADS * ROUNDS + 2
    wrong = [s for s in seen if s != ["accept", []]]
    assert not wrong, f"{backend}: {len(wrong)} of {len(seen)} verdicts differ: {wrong[:3]}"
