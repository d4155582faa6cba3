"""``sealgate open``: decrypt on the card, verify every signature with the gateway's code.

There is one verification path in sealgate: :meth:`sealgate.engine.Gateway.evaluate`
(signature math, trust anchors, CRLs, directory). ``open`` runs it on the
message as received -- which verifies every signature the gateway can see (the
outer one of a triple wrap) -- and again after each decryption, on the
decrypted entity under the same header fields, which verifies the signatures
that were hidden inside (the inner one). Between the two, the layers are
unwrapped here: multipart/signed, opaque signed-data, compressed-data, and
(Auth)EnvelopedData, whose content key the card decrypts (one private-key
operation per encryption layer).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms

from ..engine import Gateway
from ..model import SignerReport, Verdict
from ..smime.mime import parse_content_type
from . import mimewrap
from .cmsbuild import decrypt_enveloped
from .errors import EndpointError
from .keys import PrivateKeyOps

MAX_LAYERS = 8
_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")


@dataclass
class Stage:
    """What the gateway's evaluation said about the message at one depth."""

    after_decryptions: int
    structure: str
    signers: list[SignerReport]
    codes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"after_decryptions": self.after_decryptions, "structure": self.structure,
                "signers": [s.as_dict() for s in self.signers], "violations": self.codes}


@dataclass
class Opened:
    message: bytes  # the clear message: the outer header fields and the innermost entity
    layers: list[str] = field(default_factory=list)  # "signed", "encrypted", ... outermost first
    stages: list[Stage] = field(default_factory=list)
    outer_verdict: Verdict | None = None

    @property
    def signers(self) -> list[SignerReport]:
        return [s for stage in self.stages for s in stage.signers]

    @property
    def verified(self) -> bool:
        """Every signature seen verified, and there was at least one."""
        return bool(self.signers) and all(s.result == "pass" for s in self.signers)

    def as_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "layers": self.layers,
                "stages": [s.as_dict() for s in self.stages],
                "outer_action": str(self.outer_verdict.action) if self.outer_verdict else None}


def _decode_body(entity: mimewrap.Split) -> bytes:
    cte = (entity.header("Content-Transfer-Encoding") or ["7bit"])[0].strip().lower()
    if cte == "base64":
        try:
            return base64.b64decode(b"".join(entity.body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EndpointError(f"the S/MIME part's base64 is broken ({exc})") from None
    return entity.body


def _first_part(entity: mimewrap.Split, boundary: str) -> bytes:
    """The exact bytes of the signed part of multipart/signed (RFC 1847 §2.1)."""
    delim = b"--" + boundary.encode()
    body = b"\r\n" + entity.body
    # RFC 2046 §5.1.1: a delimiter line may end in linear white space before its CRLF
    first = re.search(b"\r\n" + re.escape(delim) + b"[ \t]*\r\n", body)
    if first is None:
        raise EndpointError("multipart/signed without its first boundary")
    start = first.end()
    end = body.find(b"\r\n" + delim, start)
    if end < 0:
        raise EndpointError("multipart/signed without a second part")
    return body[start:end]


def open_message(raw: bytes, key: PrivateKeyOps, gateway: Gateway, *, at: dt.datetime | None = None,
                 now: dt.datetime | None = None) -> Opened:
    """Unwrap every layer of ``raw``, decrypting with ``key``; ``gateway`` verifies."""
    raw = mimewrap.to_crlf(raw)
    split = mimewrap.split_message(raw)
    outer_fields = split.raw_fields(content=False)
    opened = Opened(message=raw)
    verdict = gateway.evaluate(io.BytesIO(raw), at=at, now=now)
    opened.outer_verdict = verdict
    opened.stages.append(Stage(0, verdict.structure, verdict.signers, verdict.codes))
    entity = mimewrap.entity_of(split)
    decryptions = 0
    for _ in range(MAX_LAYERS):
        part = mimewrap.split_message(entity)
        values = part.header("Content-Type")
        ctype = parse_content_type(values[0] if values else None)
        if ctype.type == "multipart/signed":
            opened.layers.append("signed")
            entity = _first_part(part, ctype.param("boundary"))
            continue
        if ctype.type not in _PKCS7_MIME:
            break
        der = _decode_body(part)
        try:
            info = cms.ContentInfo.load(der)
            kind = info["content_type"].native
        except (ValueError, TypeError) as exc:
            raise EndpointError(f"the application/pkcs7-mime part is not CMS ({exc})") from None
        if kind == "signed_data":
            opened.layers.append("signed")
            content = info["content"]["encap_content_info"]["content"]
            if content.native is None:
                raise EndpointError("opaque signed-data without content")
            entity = mimewrap.to_crlf(bytes(content.native))
        elif kind == "compressed_data":
            opened.layers.append("compressed")
            blob = bytes(info["content"]["encap_content_info"]["content"].native)
            entity = mimewrap.to_crlf(zlib.decompress(blob))
        elif kind in ("enveloped_data", "authenticated_enveloped_data"):
            opened.layers.append("encrypted")
            entity = mimewrap.to_crlf(decrypt_enveloped(der, key))
            decryptions += 1
            inner = mimewrap.with_headers(outer_fields, entity)
            verdict = gateway.evaluate(io.BytesIO(inner), at=at, now=now)
            opened.stages.append(Stage(decryptions, verdict.structure, verdict.signers, verdict.codes))
        else:
            raise EndpointError(f"CMS content {kind} is not supported here")
    else:
        raise EndpointError(f"more than {MAX_LAYERS} S/MIME layers")
    opened.message = mimewrap.with_headers(outer_fields, entity)
    return opened
