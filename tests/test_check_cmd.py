"""``sealgate check`` as a script sees it: JSON of SPEC §7 and the exit codes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_helpers import write_config

from sealgate import devmail as m
from sealgate.devpki import TestPKI, write_crl

BODY = m.text_entity("Hello Bob\r\n")


def run_check(config: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sealgate", "check", "--config", str(config), *args],
                          input=stdin, capture_output=True, check=False, timeout=120)


@pytest.fixture(scope="module")
def config(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("check"), pki)


def test_check_prints_spec_json_and_exits_0_on_accept(config, pki, tmp_path):
    msg = tmp_path / "good.eml"
    msg.write_bytes(m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]),
                              "alice@example.com", ["bob@example.com"]))
    proc = run_check(config, "--json", str(msg))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"action", "rule", "direction", "structure", "violations", "signers",
                        "recipients", "notes"}
    assert out["action"] == "accept"
    assert out["rule"] == "internal"
    assert out["direction"] == "internal"
    assert out["structure"] == "signed(encrypted)"
    assert out["violations"] == []
    assert [(s["email"], s["serial"], s["result"]) for s in out["signers"]] == [
        ("alice@example.com", pki["alice"].serial_hex, "pass")]
    assert out["signers"][0]["issuer"] == pki.ca.cert.subject.rfc4514_string()
    signed_at = dt.datetime.fromisoformat(out["signers"][0]["signing_time"])
    assert abs(signed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(hours=1)
    assert out["recipients"] == [{"address": "bob@example.com", "covered": True}]


def test_check_reads_stdin_and_exits_1_on_quarantine(config):
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"])
    proc = run_check(config, "--json", "-", stdin=raw)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["action"] == "quarantine"
    assert {v["code"] for v in out["violations"]} == {"unsigned", "unencrypted"}
    assert all(v["detail"] for v in out["violations"])


def test_check_from_and_to_override_the_headers(config):
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"])
    proc = run_check(config, "--json", "--from", "news@partner.example", "--to", "bob@example.com",
                     "-", stdin=raw)
    out = json.loads(proc.stdout)
    assert (out["direction"], out["rule"], out["action"]) == ("inbound", "inbound", "tag")
    assert proc.returncode == 1


def test_check_exits_3_on_tempfail(pki, tmp_path):
    now = dt.datetime.now(dt.UTC)
    stale = write_crl(tmp_path / "stale.crl", pki.ca, [], last_update=now - dt.timedelta(days=3),
                      next_update=now - dt.timedelta(days=1))
    config = write_config(tmp_path / "cfg", pki, crls=[stale])
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]), "alice@example.com",
                    ["bob@example.com"])
    proc = run_check(config, "--json", "-", stdin=raw)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["action"] == "tempfail"


def test_check_exits_2_on_configuration_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('authserv_id = "mx"\nno_such_key = 1\n')
    proc = run_check(bad, "-", stdin=b"")
    assert proc.returncode == 2
    assert "no_such_key" in proc.stderr.decode()


def test_check_exits_2_on_missing_file(config, tmp_path):
    proc = run_check(config, str(tmp_path / "missing.eml"))
    assert proc.returncode == 2


def test_check_human_output_names_action_and_codes(config):
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"])
    proc = run_check(config, "-", stdin=raw)
    text = proc.stdout.decode()
    assert text.startswith("quarantine: rule internal")
    assert "violation unsigned" in text and "violation unencrypted" in text


def test_check_at_must_be_iso_time(config):
    proc = run_check(config, "--at", "yesterday", "-", stdin=b"")
    assert proc.returncode == 2
    assert "ISO 8601" in proc.stderr.decode()
