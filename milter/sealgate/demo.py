"""``make demo``: the gateway at work on a throwaway PKI, in one command.

Builds under ``demo/`` a CA with a CRL, a cast of users, the ``files``
directory, a config on the embedded defaults and the strict policy; starts
``sealgate milter`` on a unix socket; pushes real messages made by
``openssl cms`` through it over the milter protocol, as Postfix would; and
prints what it decided for each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import devmail as m
from . import devnss
from .devconfig import write_gateway_config
from .devpki import TestPKI, build_pki
from .milterclient import MilterProcess, MilterResult


def scenarios(pki: TestPKI) -> list[tuple[str, str, list[str], bytes]]:
    """(description, envelope sender, recipients, message) made by openssl cms."""
    alice, bob, carol = pki["alice"], pki["bob"], pki["carol"]
    body = m.text_entity("Hi Bob,\r\n\r\nthe Q3 figures are attached.\r\n\r\nAlice\r\n")
    ab = ("alice@example.com", ["bob@example.com"])

    def msg(entity: bytes, sender: str, rcpts: list[str], subject: str) -> bytes:
        return m.message(entity, sender, rcpts, subject)

    garbage = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx////\r\n")
    return [
        ("triple-wrapped, alice -> bob", *ab,
         msg(m.triple_wrap(body, alice, [bob, alice]), *ab, "Q3 figures")),
        ("plain text, alice -> bob", *ab, msg(body, *ab, "Lunch?")),
        ("signed only, alice -> bob", *ab, msg(m.sign(body, alice), *ab, "Signed")),
        ("encrypted only (sign-then-encrypt)", *ab,
         msg(m.encrypt(m.sign(body, alice), [bob, alice]), *ab, "Hidden signature")),
        ("revoked signer (carol's lost card)", "carol@example.com", ["bob@example.com"],
         msg(m.triple_wrap(body, carol, [bob, carol]), "carol@example.com",
             ["bob@example.com"], "From a lost card")),
        ("encrypted to a revoked certificate", "alice@example.com", ["carol@example.com"],
         msg(m.triple_wrap(body, alice, [carol, alice]), "alice@example.com",
             ["carol@example.com"], "To a lost card")),
        ("signer is not the sender", "bob@example.com", ["alice@example.com"],
         msg(m.triple_wrap(body, alice, [alice, bob]), "bob@example.com",
             ["alice@example.com"], "Spoofed")),
        ("gpgsm-encrypted, openssl-signed", *ab,
         msg(m.sign(m.gpgsm_encrypt(m.sign(body, alice), [bob, alice], pki.ca), alice), *ab,
             "From GnuPG")),
        *_thunderbird(pki, body, msg),
        ("malformed CMS", *ab, msg(garbage, *ab, "Broken")),
        ("inbound plain from a partner", "news@partner.example", ["bob@example.com"],
         msg(body, "news@partner.example", ["bob@example.com"], "Newsletter")),
    ]


def _thunderbird(pki: TestPKI, body: bytes, msg) -> list:  # noqa: ANN001
    """A triple wrap made by NSS (Thunderbird's library), when its tools are installed."""
    if devnss.missing_tools():
        return []
    alice, bob = pki["alice"], pki["bob"]
    entity = devnss.nss_triple_wrap(body, alice, [bob, alice], ca=pki.ca)
    return [("Thunderbird-style (NSS cmsutil)", "alice@example.com", ["bob@example.com"],
             msg(entity, "alice@example.com", ["bob@example.com"], "From NSS"))]


def _policy_of(result: MilterResult) -> str:
    for name, value in result.added_headers:
        if name.lower() == "sealgate-policy":
            return value
    return result.reply or ""


def _smime_of(result: MilterResult) -> str:
    for name, value in result.added_headers:
        if name.lower() == "authentication-results" and "smime=" in value:
            return value.split("smime=", 1)[1].split()[0].rstrip(";")
    return "-"


def run(folder: Path) -> int:
    folder = folder.resolve()
    for sub in ("pki", "quarantine"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building a throwaway PKI and directory under {folder}/pki ...")
    pki = build_pki(folder / "pki")
    sock = folder / "sealgate.sock"
    sock.unlink(missing_ok=True)
    config = folder / "sealgate.toml"
    write_gateway_config(config.parent, anchors=["pki/ca.pem"], crls=["pki/ca.crl"],
                         directory={"backend": "files", "path": "pki/directory"},
                         socket=f"unix:{sock}", quarantine="quarantine",
                         header="# Written by `make demo`: the embedded defaults, pointed at the demo PKI.")

    print("checking the configuration: sealgate config check")
    subprocess.run([sys.executable, "-m", "sealgate", "config", "check", "--config", str(config)],
                   check=True)
    print(f"starting: sealgate milter --config {config}")
    (folder / "milter.log").unlink(missing_ok=True)
    try:
        milter = MilterProcess(config, sock, folder / "milter.log")
    except RuntimeError as exc:
        raise SystemExit(f"{exc}; see {folder}/milter.log") from None
    with milter:
        rows = []
        messages = folder / "messages"
        shutil.rmtree(messages, ignore_errors=True)
        messages.mkdir()
        for n, (what, sender, rcpts, raw) in enumerate(scenarios(pki), 1):
            (messages / f"{n:02d}.eml").write_bytes(raw)
            result = milter.send(raw, sender, rcpts, queue_id=f"DEMO{n:04d}")
            rows.append((str(n), what, result.outcome, _smime_of(result), _policy_of(result)))
    _print_table(["#", "message", "postfix would", "smime", "sealgate decision"], rows)
    print(f"\nmessages: {folder}/messages/NN.eml   milter log: {folder}/milter.log   "
          f"quarantine: {folder}/quarantine")
    print(f"try: .venv/bin/sealgate check --config {config} --json {folder}/messages/05.eml")
    print(f"     .venv/bin/sealgate quarantine list --config {config}")
    print(f"     .venv/bin/sealgate report --config {config} --format html -o {folder}/report.html")
    return 0


def _print_table(head: list[str], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [tuple(head), *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print()
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("demo")
    os.umask(0o077)
    return run(folder)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
