"""``sealgate quarantine list|show|release|delete|purge|export|audit`` on a real store.

Messages are put in through the store (as the milter does); the commands run
through click's runner against a real config file; releases go to a real
SMTP receiver on loopback.
"""

from __future__ import annotations

import dataclasses
import io
import json
import mailbox
from pathlib import Path
from typing import Any

import pytest
import quarantine_fixtures as qf
from click.testing import CliRunner
from gateway_helpers import write_config
from quarantine_fixtures import ENVELOPE, VERDICT, Recorder, ago

from sealgate.cli import main
from sealgate.devpki import TestPKI
from sealgate.model import Envelope
from sealgate.quarantine import Sealer, SqliteQuarantine
from sealgate.quarantine.postgresql import PostgresQuarantine

receiver, pg_server = qf.receiver, qf.pg_server

MESSAGE = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Q3 numbers\r\n\r\n"
           b"BODY-LINE-1\r\nBODY-LINE-2\r\n")


def site(folder: Path, pki: TestPKI, target: str = "127.0.0.1:10026", *,
         encrypt_to: list[Path] | None = None, backend: str = "sqlite", url: str = "") -> Path:
    config = write_config(folder, pki)
    keys = [f'release_smtp = "{target}"', 'notify_from = "postmaster@example.com"']
    if encrypt_to:
        keys.append("encrypt_to = [" + ", ".join(f'"{p}"' for p in encrypt_to) + "]")
    if backend == "postgresql":
        keys += ['backend = "postgresql"', f'url = "{url}"']
    text = config.read_text().replace("[quarantine]\n", "[quarantine]\n" + "\n".join(keys) + "\n")
    config.write_text(text)
    return config


def run(config: Path, *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(main, ["quarantine", *args, "--config", str(config)],
                                catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def populated(tmp_path: Path, pki: TestPKI, receiver: tuple[Recorder, str]) -> dict[str, Any]:
    config = site(tmp_path / "site", pki, receiver[1])
    store = SqliteQuarantine(tmp_path / "site" / "quarantine")
    other = dataclasses.replace(VERDICT, rule="inbound", violations=VERDICT.violations[:1])
    ids = {
        "old": store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT, received=ago(days=120)),
        "alice": store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT, received=ago(hours=2)),
        "mallory": store.put(io.BytesIO(MESSAGE), Envelope("mallory@evil.test", ("bob@example.com",)),
                             other, received=ago(hours=1)),
    }
    store.close()
    return {"config": config, "ids": ids, "recorder": receiver[0], "store": tmp_path / "site"}


def test_list_filters_and_json(populated: dict[str, Any]) -> None:
    config, ids = populated["config"], populated["ids"]
    out = run(config, "list").output
    assert [line.split()[0] for line in out.splitlines()] == [ids["old"], ids["alice"],
                                                             ids["mallory"]]
    data = json.loads(run(config, "list", "--json", "--since", "7d").output)
    assert [e["id"] for e in data] == [ids["alice"], ids["mallory"]]
    data = json.loads(run(config, "list", "--json", "--sender", "*@evil.test").output)
    assert [e["id"] for e in data] == [ids["mallory"]]
    data = json.loads(run(config, "list", "--json", "--code", "signer-not-sender").output)
    assert [e["id"] for e in data] == [ids["old"], ids["alice"]]
    data = json.loads(run(config, "list", "--json", "--rule", "inbound", "--recipient",
                          "BOB@example.com").output)
    assert [e["id"] for e in data] == [ids["mallory"]]
    assert json.loads(run(config, "list", "--json", "--state", "released").output) == []


def test_show_prints_verdict_and_headers_and_the_body_on_request(populated: dict[str, Any]) -> None:
    config, entry_id = populated["config"], populated["ids"]["alice"]
    out = run(config, "show", entry_id, "--reviewer", "rita").output
    assert "violation unencrypted: content is not encrypted" in out
    assert "Subject: Q3 numbers" in out
    assert "BODY-LINE-1" not in out
    out = run(config, "show", entry_id, "--body", "--reviewer", "rita").output
    assert "BODY-LINE-1" in out
    shown = json.loads(run(config, "show", entry_id, "--json").output)
    assert shown["codes"] == ["signer-not-sender", "unencrypted"]
    assert shown["headers"].startswith("From: alice@example.com")
    audit = json.loads(run(config, "audit", "--json", "--entry", entry_id).output)
    assert [(a["reviewer"], a["action"], a["detail"]["body"]) for a in audit][:2] == [
        ("rita", "show", False), ("rita", "show", True)]


def test_release_sends_once_and_is_audited(populated: dict[str, Any]) -> None:
    config, entry_id, recorder = populated["config"], populated["ids"]["alice"], populated["recorder"]
    out = run(config, "release", entry_id, "--reviewer", "rita", "--reason", "false positive").output
    assert f"{entry_id}: released to" in out
    assert [(m.mail_from, m.rcpt_tos, m.content) for m in recorder.messages] == [
        ("alice@example.com", ["bob@example.com", "carol@example.com"], MESSAGE)]
    again = run(config, "release", entry_id, "--reason", "again", ok=False)
    assert again.exit_code == 1 and "not held" in again.output
    assert len(recorder.messages) == 1
    audit = run(config, "audit", "--entry", entry_id).output
    assert "rita" in audit and "release" in audit and '"false positive"' in audit


def test_release_needs_a_reason(populated: dict[str, Any]) -> None:
    result = run(populated["config"], "release", populated["ids"]["alice"], ok=False)
    assert result.exit_code == 2 and "--reason" in result.output


def test_delete_and_purge(populated: dict[str, Any]) -> None:
    config, ids = populated["config"], populated["ids"]
    run(config, "delete", ids["mallory"], "--reason", "spam", "--reviewer", "sam")
    shown = json.loads(run(config, "show", ids["mallory"], "--json").output)
    assert shown["state"] == "deleted" and shown["headers"] is None
    out = run(config, "purge", "--older-than", "90d", "--dry-run").output
    assert out.startswith("1 entries")
    out = run(config, "purge", "--older-than", "90d", "--reviewer", "sam").output
    assert out.startswith("purged 1 entries and 0 decision records")
    remaining = [e["id"] for e in json.loads(run(config, "list", "--json").output)]
    assert remaining == [ids["alice"], ids["mallory"]]
    audit = json.loads(run(config, "audit", "--json", "--reviewer", "sam").output)
    assert [(a["action"], a["reason"]) for a in audit] == [("delete", "spam"),
                                                          ("purge", "retention")]
    assert audit[1]["detail"]["count"] == 1


def test_export_to_mbox_and_to_eml_folder(populated: dict[str, Any], tmp_path: Path) -> None:
    config, ids = populated["config"], populated["ids"]
    run(config, "export", "--since", "7d", "--format", "mbox", "-o", str(tmp_path / "hold.mbox"),
        "--reason", "legal hold 2026-17")
    box = mailbox.mbox(tmp_path / "hold.mbox")
    messages = list(box)
    box.close()
    assert len(messages) == 2
    assert messages[0].get_from().startswith("alice@example.com ")
    assert messages[1]["Subject"] == "Q3 numbers"
    run(config, "export", "--format", "eml", "-o", str(tmp_path / "eml"), "--reason", "hold")
    files = sorted(p.name for p in (tmp_path / "eml").iterdir())
    assert files == sorted(f"{i}.eml" for i in ids.values())
    assert all((tmp_path / "eml" / f).read_bytes() == MESSAGE for f in files)
    assert all((tmp_path / "eml" / f).stat().st_mode & 0o077 == 0 for f in files)
    audit = json.loads(run(config, "audit", "--json").output)
    assert [a["action"] for a in audit] == ["export", "export"]
    assert sorted(audit[0]["detail"]["ids"]) == sorted([ids["alice"], ids["mallory"]])


def test_encrypted_entries_need_a_reviewer_key(tmp_path: Path, pki: TestPKI,
                                               receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    reviewer = pki["grace"]
    config = site(tmp_path / "site", pki, target, encrypt_to=[reviewer.cert_path])
    store = SqliteQuarantine(tmp_path / "site" / "quarantine",
                             sealer=Sealer.from_files([reviewer.cert_path]))
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    store.close()
    out = run(config, "show", entry_id).output
    assert "encrypted at rest" in out and "Q3 numbers" not in out
    out = run(config, "show", entry_id, "--body", "--key-file", str(reviewer.key_path)).output
    assert "Subject: Q3 numbers" in out and "BODY-LINE-2" in out
    refused = run(config, "release", entry_id, "--reason", "ok", ok=False)
    assert refused.exit_code == 2 and "--key-file" in refused.output
    run(config, "release", entry_id, "--reason", "ok", "--key-file", str(reviewer.key_path))
    assert [m.content for m in recorder.messages] == [MESSAGE]


def test_commands_work_on_the_postgresql_backend(tmp_path: Path, pki: TestPKI, pg_server: Any,
                                                 receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    url = qf.fresh_database(pg_server)
    config = site(tmp_path / "site", pki, target, backend="postgresql", url=url)
    store = PostgresQuarantine(url)
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    store.close()
    assert run(config, "list").output.startswith(entry_id)
    run(config, "release", entry_id, "--reason", "ok")
    assert [m.content for m in recorder.messages] == [MESSAGE]
    assert json.loads(run(config, "list", "--json").output)[0]["state"] == "released"


def test_unknown_id_is_one_line_naming_it(populated: dict[str, Any]) -> None:
    result = run(populated["config"], "show", "20200101T000000Z-000000000000", ok=False)
    assert result.exit_code == 1
    assert "no quarantined message 20200101T000000Z-000000000000" in result.output
