"""A stand-in gateway for the socket tests, run in its own process.

``python tests/fakegateway.py SOCKET QUARANTINE_DIR`` serves the real milter
(``sealgate.milter_app.run``) on a unix socket with a gateway whose verdict
is named by the message's Subject (accept, tag, quarantine, reject, tempfail;
"slow" sleeps before accepting, after touching QUARANTINE_DIR/../evaluating).
The real engine replaces it in the lead's variants of these tests.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO

from sealgate.codes import Action, AuthResult, Code, Direction
from sealgate.milter_app import run
from sealgate.model import Envelope, Finding, SignerReport, Verdict
from sealgate.quarantine import SqliteQuarantine

CODES = {
    Action.ACCEPT: (), Action.TAG: (Code.UNSIGNED,), Action.QUARANTINE: (Code.SIGNATURE_HIDDEN,),
    Action.REJECT: (Code.MALFORMED,), Action.TEMPFAIL: (Code.DIRECTORY_UNAVAILABLE,),
}


class SubjectGateway:
    def __init__(self, marker: Path) -> None:
        self.config = SimpleNamespace(authserv_id="mx.example.com",
                                      milter=SimpleNamespace(max_message_size=1024 * 1024))
        self.marker = marker

    def evaluate(self, source: IO[bytes], envelope: Envelope) -> Verdict:
        head = source.read(64 * 1024).split(b"\r\n\r\n", 1)[0]
        subject = ""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"subject:"):
                subject = line.split(b":", 1)[1].strip().decode()
        if subject == "slow":
            self.marker.touch()
            time.sleep(2)
            subject = "accept"
        action = Action(subject) if subject in set(Action) else Action.ACCEPT
        signer = SignerReport(envelope.sender, (envelope.sender,), "1f", "CN=Test CA", "pass")
        return Verdict(action=action, rule="internal", direction=Direction.INTERNAL,
                       structure="signed(plain)",
                       violations=[Finding(c, "fake") for c in CODES[action]],
                       signers=[signer], recipients=[], auth_result=AuthResult.PASS)

    def too_large(self, envelope: Envelope, size: int) -> Verdict:
        return Verdict(Action.REJECT, "internal", Direction.INTERNAL, "unknown",
                       [Finding(Code.TOO_COMPLEX, "too large")], [], [], AuthResult.PERMERROR)


def main() -> None:
    socket, quarantine = sys.argv[1], Path(sys.argv[2])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    run(SubjectGateway(quarantine.parent / "evaluating"), f"unix:{socket}", 10,
        store=SqliteQuarantine(quarantine), drain_timeout=10)
    print("drained", flush=True)


if __name__ == "__main__":
    main()
