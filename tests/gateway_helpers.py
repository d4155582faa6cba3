"""Building a real gateway (config + policy + PKI files) for tests."""

from __future__ import annotations

import io
from pathlib import Path

from sealgate.devconfig import write_gateway_config
from sealgate.devpki import TestPKI
from sealgate.engine import Gateway, load_gateway
from sealgate.model import Envelope, Verdict

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def write_config(folder: Path, pki: TestPKI, *, policy: str = "strict.toml",
                 crls: list[Path] | None = None, directory: Path | None = None,
                 extra: str = "") -> Path:
    return write_gateway_config(
        folder, anchors=[pki.ca.cert_path], crls=crls if crls is not None else [pki.crl_path],
        directory={"backend": "files", "path": directory or pki.directory},
        policy=POLICIES / policy, extra=extra)


def gateway_for(folder: Path, pki: TestPKI, **kwargs) -> Gateway:
    return load_gateway(write_config(folder, pki, **kwargs))


def evaluate(gateway: Gateway, raw: bytes, sender: str, recipients: list[str], **kw) -> Verdict:
    envelope = Envelope(sender=sender, recipients=tuple(recipients))
    return gateway.evaluate(io.BytesIO(raw), envelope, **kw)
