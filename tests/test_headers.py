"""What the milter writes into delivered mail (SPEC §6) and its SMTP replies."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealgate.codes import Action, AuthResult, Code, Direction
from sealgate.headers import (
    authentication_results,
    authserv_id_of,
    is_forged_authentication_results,
    reply_for,
    sealgate_policy,
)
from sealgate.model import Finding, SignerReport, Verdict

ALICE = SignerReport("alice@example.com", ("alice@example.com",), "1f2e3d",
                     "CN=Sealgate Test CA,O=Example\\, Inc.", "pass")
BOB = SignerReport("bob@example.com", ("bob@example.com",), "0a", "CN=Other CA", "pass")


def verdict(action: Action = Action.ACCEPT, codes: tuple[Code, ...] = (),
            signers: tuple[SignerReport, ...] = (), result: AuthResult = AuthResult.NONE,
            rule: str | None = "internal") -> Verdict:
    return Verdict(action=action, rule=rule, direction=Direction.INTERNAL, structure="plain",
                   violations=[Finding(c, f"{c} detail") for c in codes],
                   signers=list(signers), recipients=[], auth_result=result)


# ---------------------------------------------------------------- Authentication-Results

def test_unsigned_message_is_smime_none() -> None:
    assert authentication_results("mx.example.com", verdict()) == "mx.example.com; smime=none"


def test_verified_signer_is_named_by_identifier_serial_and_issuer() -> None:
    value = authentication_results("mx.example.com", verdict(signers=(ALICE,),
                                                             result=AuthResult.PASS))
    assert value == ('mx.example.com; smime=pass body.smime-identifier=alice@example.com '
                     'body.smime-serial=1f2e3d '
                     'body.smime-issuer="CN=Sealgate Test CA,O=Example\\\\, Inc."')


def test_one_resinfo_per_verified_signer() -> None:
    value = authentication_results("mx.example.com", verdict(signers=(ALICE, BOB),
                                                             result=AuthResult.PASS))
    resinfos = value.split("; ")[1:]
    assert [r.split()[1] for r in resinfos] == ["body.smime-identifier=alice@example.com",
                                                "body.smime-identifier=bob@example.com"]
    assert all(r.startswith("smime=pass ") for r in resinfos)


def test_failed_signer_is_never_named() -> None:
    bad = SignerReport("mallory@example.com", ("mallory@example.com",), "99", "CN=X",
                       "bad-signature")
    value = authentication_results("mx.example.com", verdict(signers=(bad,),
                                                             result=AuthResult.FAIL))
    assert value == "mx.example.com; smime=fail"


def test_policy_result_still_names_the_verified_signer() -> None:
    value = authentication_results("mx.example.com", verdict(signers=(ALICE,),
                                                             result=AuthResult.POLICY))
    assert value.startswith("mx.example.com; smime=policy body.smime-identifier=alice@")


def test_values_that_are_not_tokens_are_quoted() -> None:
    odd = SignerReport('"odd person"@example.com', (), "ab", 'CN=Quote " and \\ back', "pass")
    value = authentication_results("mx.example.com", verdict(signers=(odd,),
                                                             result=AuthResult.PASS))
    assert 'body.smime-identifier="\\"odd person\\"@example.com"' in value
    assert 'body.smime-issuer="CN=Quote \\" and \\\\ back"' in value


def test_no_line_break_can_be_injected_through_a_certificate() -> None:
    evil = SignerReport("a@example.com", (), "01", "CN=x\r\nBcc: victim@example.com", "pass")
    value = authentication_results("mx.example.com", verdict(signers=(evil,),
                                                             result=AuthResult.PASS))
    assert "\r" not in value and "\n" not in value


# ---------------------------------------------------------------- Sealgate-Policy

def test_sealgate_policy_lists_rule_action_and_sorted_codes() -> None:
    v = verdict(Action.QUARANTINE, (Code.UNENCRYPTED, Code.SIGNATURE_HIDDEN))
    assert sealgate_policy(v) == ("rule=internal; action=quarantine; "
                                  "codes=signature-hidden,unencrypted")


def test_sealgate_policy_without_rule_or_codes() -> None:
    assert sealgate_policy(verdict(rule=None)) == "rule=none; action=accept; codes=none"


def test_sealgate_policy_quotes_an_odd_rule_name() -> None:
    assert sealgate_policy(verdict(rule="the; rule")).startswith('rule="the; rule"; ')


@given(st.lists(st.sampled_from(list(Code)), unique=True),
       st.sampled_from(list(Action)), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_sealgate_policy_parses_back(codes: list[Code], action: Action, rule: str) -> None:
    value = sealgate_policy(verdict(action, tuple(codes), rule=rule))
    fields = dict(part.split("=", 1) for part in value.split("; "))
    assert fields["rule"] == rule
    assert fields["action"] == str(action)
    parsed = [] if fields["codes"] == "none" else fields["codes"].split(",")
    assert parsed == sorted(str(c) for c in codes)


def test_texts_made_again_are_the_same_and_the_store_of_them_stays_bounded() -> None:
    from sealgate import headers as h

    first: dict[int, tuple[str, str]] = {}
    for _ in range(2):  # the second round comes from what the first one kept, or anew
        for n in range(3 * h._MADE_MAX):
            signer = SignerReport(f"user{n}@example.com", (f"user{n}@example.com",), f"{n:x}",
                                  f"CN=CA {n % 7}", "pass")
            v = verdict(Action.TAG, (Code.UNSIGNED,) if n % 2 else (), (signer,),
                        AuthResult.PASS, rule=f"rule-{n % 300}")
            got = (authentication_results("mx.example.com", v), sealgate_policy(v))
            assert got == first.setdefault(n, got)
            assert f"body.smime-identifier=user{n}@example.com body.smime-serial={n:x}" in got[0]
            assert got[1].startswith(f"rule=rule-{n % 300}; action=tag; codes=")
    assert len(h._signer_texts) <= h._MADE_MAX and len(h._policy_texts) <= h._MADE_MAX


# ---------------------------------------------------------------- forged A-R

@pytest.mark.parametrize("value", [
    "mx.example.com; smime=pass",
    "MX.Example.COM; smime=pass",
    "  mx.example.com 1; smime=pass",
    "(our gateway (really)) mx.example.com; none",
    '"mx.example.com"; smime=pass',
    "mx.example.com;smime=pass",
    "mx.example.com\r\n\t; smime=pass",
])
def test_fields_claiming_our_authserv_id_are_forged(value: str) -> None:
    assert is_forged_authentication_results(value, "mx.example.com")


@pytest.mark.parametrize("value", [
    "mx.other.net; smime=pass",
    "mx.example.com.evil.net; smime=pass",
    "relay.mx.example.com; dkim=pass",
    "",
    "(only a comment)",
    "; smime=pass",
])
def test_fields_of_other_servers_are_kept(value: str) -> None:
    assert not is_forged_authentication_results(value, "mx.example.com")


def test_authserv_id_of_skips_comments_and_version() -> None:
    assert authserv_id_of("(c) mx.example.com (x) 1 ; none") == "mx.example.com"


# ---------------------------------------------------------------- replies

def test_reject_reply_is_550_5_7_1_naming_the_codes() -> None:
    code, xcode, text = reply_for(verdict(Action.REJECT, (Code.WEAK_ALGORITHM, Code.MALFORMED)))
    assert (code, xcode) == ("550", "5.7.1")
    assert "malformed, weak-algorithm" in text
    assert "internal" in text


def test_tempfail_reply_is_451_4_7_1() -> None:
    code, xcode, text = reply_for(verdict(Action.TEMPFAIL, (Code.DIRECTORY_UNAVAILABLE,)))
    assert (code, xcode) == ("451", "4.7.1")
    assert "directory-unavailable" in text


def test_reply_text_has_every_percent_doubled_for_libmilter() -> None:
    _, _, text = reply_for(verdict(Action.REJECT, (Code.UNSIGNED,), rule="100%"))
    assert all(len(run) % 2 == 0 for run in re.findall("%+", text))


def test_no_reply_for_an_accepting_action() -> None:
    with pytest.raises(ValueError, match="quarantine"):
        reply_for(verdict(Action.QUARANTINE))
