"""What the milter writes into delivered mail, and the SMTP replies (SPEC §6).

Pure functions of a :class:`~sealgate.model.Verdict`: no I/O, no pymilter.
The milter adapter (``milter_app``) only applies what these return.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from .codes import REPLY_REJECT, REPLY_TEMPFAIL, Action, AuthResult
from .model import SignerReport, Verdict

AUTHENTICATION_RESULTS = "Authentication-Results"
SEALGATE_POLICY = "Sealgate-Policy"

# RFC 2045 §5.1 token: any CHAR except SPACE, CTLs and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
# RFC 5322 dot-atom local part @ RFC 5890 domain name: a bare pvalue (RFC 8601 §2.2).
_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\Z"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clean(text: str) -> str:
    """No CR, LF or other control characters may reach a header (header injection)."""
    return _CONTROL.sub(" ", text).strip()


def quote(value: str) -> str:
    """RFC 2045 token as is, anything else as an RFC 5322 quoted-string."""
    if _TOKEN.match(value):  # no control or space in a token: nothing to clean
        return value
    value = _clean(value)
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(value: str) -> str:
    """RFC 8601 §2.2 pvalue: an addr-spec may stand bare; otherwise token or quoted-string."""
    if _ADDR_SPEC.match(value):  # no control or space in an addr-spec: nothing to clean
        return value
    value = _clean(value)
    return value if _ADDR_SPEC.match(value) else quote(value)


# Header texts made before, by their inputs: the same signers and the same
# verdicts come back with message after message, and each text costs a few
# regular-expression matches. Bounded: emptied when full.
_MADE_MAX = 256
K = TypeVar("K")
_signer_texts: dict[tuple[str, str, str], str] = {}
_policy_texts: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _kept(texts: dict[K, str], key: K, make: Callable[[K], str]) -> str:
    """``make(key)``, kept in ``texts`` (emptied when it holds _MADE_MAX)."""
    text = texts.get(key)
    if text is None:
        text = make(key)
        if len(texts) >= _MADE_MAX:
            texts.clear()
        texts[key] = text
    return text


def _signer_properties(signer: SignerReport) -> str:
    return _kept(_signer_texts, (signer.email or "", signer.serial, signer.issuer),
                 lambda key: _signer_text(*key))


def _signer_text(email: str, serial: str, issuer: str) -> str:
    # RFC 7281 §3: the ptype "body" names what the S/MIME signature covered.
    props = []
    if email:
        props.append(f"body.smime-identifier={_pvalue(email)}")
    if serial:
        props.append(f"body.smime-serial={quote(serial)}")
    if issuer:
        props.append(f"body.smime-issuer={quote(issuer)}")
    return " ".join(props)


def authentication_results(authserv_id: str, verdict: Verdict) -> str:
    """The ``Authentication-Results`` value (RFC 8601 §2.2, RFC 7281 §3/§4).

    One resinfo per verified signer when the overall result is ``pass`` (or
    ``policy``: verified, but not acceptable here), each naming the signer by
    address, serial and issuer; otherwise a single ``smime=<result>`` without
    properties, so that no failed signer is ever named as if authenticated.
    """
    result = verdict.auth_result
    verified = [s for s in verdict.signers if s.result == "pass"]
    resinfos: list[str]
    if verified and result in (AuthResult.PASS, AuthResult.POLICY):
        resinfos = []
        for signer in verified:
            props = _signer_properties(signer)
            resinfos.append(f"smime={result}" + (f" {props}" if props else ""))
    else:
        resinfos = [f"smime={result}"]
    return "; ".join([quote(authserv_id), *resinfos])


def sealgate_policy(verdict: Verdict) -> str:
    """``rule=internal; action=quarantine; codes=signature-hidden,unencrypted``.

    Always the same three keys in this order; ``rule=none`` when no rule
    matched, ``codes=none`` when nothing counted against the message.
    """
    return _kept(_policy_texts, (verdict.rule or "", str(verdict.action), tuple(verdict.codes)),
                 _policy_text)


def _policy_text(key: tuple[str, str, tuple[str, ...]]) -> str:
    rule, action, codes = key
    return f"rule={quote(rule) if rule else 'none'}; action={action}; codes={','.join(codes) or 'none'}"


def _skip_cfws(value: str, pos: int) -> int:
    """Skip folding white space and (nested) RFC 5322 comments."""
    depth = 0
    while pos < len(value):
        ch = value[pos]
        if depth:
            if ch == "\\":
                pos += 1
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        elif ch == "(":
            depth = 1
        elif not ch.isspace():
            break
        pos += 1
    return pos


def authserv_id_of(value: str) -> str | None:
    """The authserv-id of an ``Authentication-Results`` value (RFC 8601 §2.2), or None."""
    pos = _skip_cfws(value, 0)
    if pos >= len(value):
        return None
    if value[pos] == '"':
        out = []
        pos += 1
        while pos < len(value) and value[pos] != '"':
            if value[pos] == "\\" and pos + 1 < len(value):
                pos += 1
            out.append(value[pos])
            pos += 1
        return "".join(out)
    end = pos
    while end < len(value) and not value[end].isspace() and value[end] not in ";(":
        end += 1
    return value[pos:end] or None


def is_forged_authentication_results(value: str, authserv_id: str) -> bool:
    """True when an incoming header claims to come from us (RFC 8601 §5: remove it)."""
    claimed = authserv_id_of(value)
    return claimed is not None and claimed.lower() == authserv_id.lower()


def _reply_text(text: str) -> str:
    # libmilter drops a reply with a single '%' (pymilter raises): double them.
    return _clean(text).replace("%", "%%")


def reply_for(verdict: Verdict) -> tuple[str, str, str]:
    """(SMTP code, enhanced code, text) for a reject or tempfail verdict."""
    codes = ", ".join(verdict.codes) or "none"
    rule = f" (rule {verdict.rule})" if verdict.rule else ""
    if verdict.action == Action.REJECT:
        code, xcode = REPLY_REJECT
        return code, xcode, _reply_text(f"Message violates the S/MIME policy{rule}: {codes}")
    if verdict.action == Action.TEMPFAIL:
        code, xcode = REPLY_TEMPFAIL
        return code, xcode, _reply_text(
            f"S/MIME policy check could not be completed{rule}: {codes}; try again later")
    raise ValueError(f"no SMTP reply for action {verdict.action!s}")


def tempfail_reply(reason: str) -> tuple[str, str, str]:
    """The 451 reply for a failure of the gateway itself (store, directory, bug)."""
    code, xcode = REPLY_TEMPFAIL
    return code, xcode, _reply_text(f"{reason}; try again later")
