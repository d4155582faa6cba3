"""The policy (SPEC §5): direction, first matching rule, counted codes, actions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sealgate.codes import Action, Code, Direction
from sealgate.errors import ConfigErrors
from sealgate.model import Envelope, Facts, Finding, RecipientReport, SignerReport
from sealgate.policy import Policy, decide, direction_of, load_policy, match_rule

REPO = Path(__file__).resolve().parents[1]
STRICT = REPO / "policies" / "strict.toml"
COMPAT = REPO / "policies" / "compat.toml"
INTERNAL = ("example.com",)


def policy_from(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text))
    return load_policy(path)


def policy_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        policy_from(tmp_path, text)
    return [str(e) for e in info.value.errors]


def env(sender: str, *recipients: str) -> Envelope:
    return Envelope(sender=sender, recipients=recipients)


def facts(*codes: Code, direction: Direction = Direction.INTERNAL) -> Facts:
    return Facts(structure="encrypted", direction=direction,
                 candidates=[Finding(c, f"detail of {c}") for c in codes],
                 signers=[], recipients=[])


def verdict_for(policy: Policy, envelope: Envelope, *codes: Code):
    return decide(facts(*codes, direction=direction_of(envelope, INTERNAL)), policy, envelope)


TWO_RULES = """
    [[rules]]
    name = "first"
    direction = "internal"
    require = ["signed"]
    action = "tag"

    [[rules]]
    name = "second"
    require = ["signed"]
    action = "reject"
    """


# ------------------------------------------------------------------ direction


def test_sender_and_all_recipients_internal_is_internal() -> None:
    assert direction_of(env("alice@example.com", "bob@example.com"), INTERNAL) \
        == Direction.INTERNAL


def test_internal_sender_with_one_external_recipient_is_outbound() -> None:
    envelope = env("alice@example.com", "bob@example.com", "partner@other.org")
    assert direction_of(envelope, INTERNAL) == Direction.OUTBOUND


def test_external_sender_is_inbound_even_to_internal_recipients() -> None:
    assert direction_of(env("eve@other.org", "bob@example.com"), INTERNAL) == Direction.INBOUND


def test_null_sender_is_inbound() -> None:
    assert direction_of(env("", "bob@example.com"), INTERNAL) == Direction.INBOUND


def test_direction_ignores_address_case() -> None:
    assert direction_of(env("<Alice@EXAMPLE.COM>", "Bob@Example.com"), INTERNAL) \
        == Direction.INTERNAL


def test_subdomain_recipient_is_external() -> None:
    assert direction_of(env("alice@example.com", "bob@eu.example.com"), INTERNAL) \
        == Direction.OUTBOUND


# ------------------------------------------------------------------ matching


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, TWO_RULES)
    rule = match_rule(policy, env("alice@example.com", "bob@example.com"), Direction.INTERNAL)
    assert rule is not None and rule.name == "first"


def test_rule_without_direction_matches_any_direction(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, TWO_RULES)
    rule = match_rule(policy, env("eve@other.org", "bob@example.com"), Direction.INBOUND)
    assert rule is not None and rule.name == "second"


def test_sender_globs_match_case_insensitively(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "partners"
        senders = ["*@Partner.ORG"]
        require = []
        """)
    assert match_rule(policy, env("Joe@partner.org", "bob@example.com"), Direction.INBOUND)
    assert match_rule(policy, env("joe@evilpartner.org", "b@example.com"),
                      Direction.INBOUND) is None


def test_recipient_globs_must_match_every_recipient(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "to-legal"
        recipients = ["legal@example.com", "*@legal.example.com"]
        require = []
        """)
    assert match_rule(policy, env("a@other.org", "Legal@example.com", "x@legal.example.com"),
                      Direction.INBOUND)
    assert match_rule(policy, env("a@other.org", "legal@example.com", "bob@example.com"),
                      Direction.INBOUND) is None


def test_null_sender_rule_matches_only_the_null_sender(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "bounces"
        senders = [""]
        require = []
        """)
    assert match_rule(policy, env("", "bob@example.com"), Direction.INBOUND)
    assert match_rule(policy, env("<>", "bob@example.com"), Direction.INBOUND)
    assert match_rule(policy, env("mailer-daemon@other.org", "bob@example.com"),
                      Direction.INBOUND) is None


def test_star_glob_does_not_match_the_null_sender(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "anyone"
        senders = ["*"]
        require = []
        """)
    assert match_rule(policy, env("eve@other.org", "bob@example.com"), Direction.INBOUND)
    assert match_rule(policy, env("", "bob@example.com"), Direction.INBOUND) is None


def test_shipped_bounces_rule_accepts_a_malformed_dsn() -> None:
    verdict = verdict_for(load_policy(STRICT), env("", "alice@example.com"), Code.MALFORMED)
    assert (verdict.rule, verdict.action, verdict.violations) == ("bounces", Action.ACCEPT, [])


def test_no_matching_rule_accepts_with_rule_none(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "internal"
        direction = "internal"
        require = ["signed"]
        """)
    verdict = verdict_for(policy, env("eve@other.org", "bob@example.com"), Code.UNSIGNED)
    assert (verdict.rule, verdict.action, verdict.violations) == (None, Action.ACCEPT, [])
    assert policy.uncovered_directions() == [Direction.OUTBOUND, Direction.INBOUND]


# ------------------------------------------------------------------ counting and actions


def test_rule_requiring_nothing_accepts_everything(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [[rules]]
        name = "open"
        require = []
        """)
    verdict = verdict_for(policy, env("eve@other.org", "bob@example.com"),
                          Code.UNSIGNED, Code.BAD_SIGNATURE, Code.MALFORMED,
                          Code.DIRECTORY_UNAVAILABLE)
    assert (verdict.rule, verdict.action, verdict.violations) == ("open", Action.ACCEPT, [])


def test_codes_the_rule_does_not_require_are_dropped() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.UNENCRYPTED, Code.SIGNER_NOT_IN_DIRECTORY)
    assert (verdict.rule, verdict.action, verdict.violations) == ("inbound", Action.ACCEPT, [])


def test_always_codes_count_under_any_rule_that_requires_something() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.BAD_SIGNATURE)
    assert verdict.rule == "inbound" and verdict.action == Action.TAG
    assert verdict.codes == ["bad-signature"]


def test_rule_action_overrides_the_default_action() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.UNSIGNED)
    assert verdict.action == Action.TAG


def test_default_action_applies_when_the_rule_has_none() -> None:
    verdict = verdict_for(load_policy(STRICT), env("alice@example.com", "bob@example.com"),
                          Code.RECIPIENT_NOT_COVERED)
    assert (verdict.rule, verdict.action) == ("internal", Action.QUARANTINE)


def test_per_code_override_wins_over_the_rule_action() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.UNSIGNED, Code.MALFORMED)
    assert (verdict.rule, verdict.action) == ("inbound", Action.REJECT)


def test_strongest_action_wins(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [defaults]
        action = "tag"
        [actions]
        unencrypted = "quarantine"
        expired-signer = "accept"
        [[rules]]
        name = "all"
        require = ["signed", "encrypted"]
        """)
    envelope = env("alice@example.com", "bob@example.com")
    assert verdict_for(policy, envelope, Code.EXPIRED_SIGNER).action == Action.ACCEPT
    assert verdict_for(policy, envelope, Code.EXPIRED_SIGNER, Code.UNSIGNED).action == Action.TAG
    assert verdict_for(policy, envelope, Code.UNSIGNED, Code.UNENCRYPTED,
                       Code.CRL_UNAVAILABLE).action == Action.TEMPFAIL


def test_transient_codes_tempfail_by_default() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.CRL_UNAVAILABLE)
    assert (verdict.rule, verdict.action) == ("inbound", Action.TEMPFAIL)


def test_transient_action_is_configurable(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [defaults]
        transient_action = "tag"
        [[rules]]
        name = "all"
        require = ["signed"]
        action = "quarantine"
        """)
    verdict = verdict_for(policy, env("a@other.org", "b@example.com"), Code.DIRECTORY_UNAVAILABLE)
    assert verdict.action == Action.TAG


def test_reject_beats_tempfail() -> None:
    verdict = verdict_for(load_policy(STRICT), env("eve@other.org", "bob@example.com"),
                          Code.DIRECTORY_UNAVAILABLE, Code.WEAK_ALGORITHM)
    assert verdict.action == Action.REJECT


def test_signature_hidden_counts_under_strict_internal() -> None:
    verdict = verdict_for(load_policy(STRICT), env("alice@example.com", "bob@example.com"),
                          Code.SIGNATURE_HIDDEN)
    assert (verdict.rule, verdict.action, verdict.codes) == \
        ("internal", Action.QUARANTINE, ["signature-hidden"])


def test_signature_hidden_does_not_count_under_compat_internal() -> None:
    verdict = verdict_for(load_policy(COMPAT), env("alice@example.com", "bob@example.com"),
                          Code.SIGNATURE_HIDDEN)
    assert (verdict.rule, verdict.action, verdict.violations) == ("internal", Action.ACCEPT, [])


def test_signature_hidden_still_counts_under_compat_outbound() -> None:
    verdict = verdict_for(load_policy(COMPAT), env("alice@example.com", "p@other.org"),
                          Code.SIGNATURE_HIDDEN)
    assert (verdict.rule, verdict.action) == ("outbound", Action.QUARANTINE)


def test_accept_override_keeps_the_violation_on_record(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, """
        [actions]
        signature-hidden = "accept"
        [[rules]]
        name = "internal"
        require = ["signed", "encrypted"]
        """)
    verdict = verdict_for(policy, env("alice@example.com", "bob@example.com"),
                          Code.SIGNATURE_HIDDEN)
    assert (verdict.action, verdict.codes) == (Action.ACCEPT, ["signature-hidden"])


def test_compat_internal_still_requires_covered_recipients() -> None:
    verdict = verdict_for(load_policy(COMPAT), env("alice@example.com", "bob@example.com"),
                          Code.SIGNATURE_HIDDEN, Code.RECIPIENT_NOT_COVERED)
    assert verdict.action == Action.QUARANTINE


def test_plain_internal_mail_is_quarantined_under_compat() -> None:
    verdict = verdict_for(load_policy(COMPAT), env("alice@example.com", "bob@example.com"),
                          Code.UNSIGNED, Code.UNENCRYPTED)
    assert (verdict.action, verdict.codes) == (Action.QUARANTINE, ["unencrypted"])


def test_outbound_does_not_require_encryption() -> None:
    verdict = verdict_for(load_policy(STRICT), env("alice@example.com", "p@other.org"),
                          Code.UNENCRYPTED, Code.SIGNER_NOT_SENDER)
    assert (verdict.rule, verdict.action, verdict.codes) == \
        ("outbound", Action.QUARANTINE, ["signer-not-sender"])


def test_violations_are_deduplicated_in_stable_order() -> None:
    envelope = env("alice@example.com", "bob@example.com", "carol@example.com")
    candidates = [Finding(Code.RECIPIENT_UNKNOWN, "carol@example.com"),
                  Finding(Code.UNSIGNED, "no signature"),
                  Finding(Code.RECIPIENT_UNKNOWN, "carol@example.com"),
                  Finding(Code.RECIPIENT_UNKNOWN, "bob@example.com")]
    verdict = decide(Facts("plain", Direction.INTERNAL, candidates, [], []),
                     load_policy(STRICT), envelope)
    assert verdict.violations == [candidates[0], candidates[1], candidates[3]]


def test_verdict_carries_structure_direction_signers_and_recipients() -> None:
    signer = SignerReport(email="alice@example.com", emails=("alice@example.com",),
                          serial="1f", issuer="CN=CA", result="pass")
    recipient = RecipientReport(address="bob@example.com", covered=True)
    facts_ = Facts("signed(encrypted)", Direction.INTERNAL, [], [signer], [recipient])
    verdict = decide(facts_, load_policy(STRICT), env("alice@example.com", "bob@example.com"))
    assert (verdict.action, verdict.rule, verdict.direction, verdict.structure) == \
        (Action.ACCEPT, "internal", Direction.INTERNAL, "signed(encrypted)")
    assert verdict.signers == [signer] and verdict.recipients == [recipient]


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("path", [STRICT, COMPAT], ids=lambda p: p.name)
def test_shipped_policy_loads_and_covers_every_direction(path: Path) -> None:
    policy = load_policy(path)
    assert [r.name for r in policy.rules] == ["bounces", "internal", "outbound", "inbound"]
    assert policy.uncovered_directions() == []
    assert policy.overrides[Code.MALFORMED] == Action.REJECT
    assert policy.overrides[Code.WEAK_ALGORITHM] == Action.REJECT


def test_unknown_requirement_names_file_rule_and_index(tmp_path: Path) -> None:
    errors = policy_errors(tmp_path, TWO_RULES + """
        [[rules]]
        name = "third"
        require = ["signed", "signd"]
        """)
    assert errors == [f"{tmp_path / 'policy.toml'}: rules[2].require[1]: unknown requirement "
                      '"signd" in rule "third" (known: signed, encrypted, signature-visible, '
                      "signer-is-sender, signer-in-directory, recipients-covered)"]


def test_unknown_violation_code_in_actions_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, '[actions]\nweak-algorithms = "reject"\n' + TWO_RULES)
    assert error.startswith(f"{tmp_path / 'policy.toml'}: actions.weak-algorithms: "
                            "unknown violation code")


def test_bad_action_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, '[defaults]\naction = "drop"\n' + TWO_RULES)
    assert error == (f'{tmp_path / "policy.toml"}: defaults.action: "drop" is not an action '
                     "(use accept, tag, quarantine, tempfail, reject)")


def test_bad_direction_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, """
        [[rules]]
        name = "x"
        direction = "incoming"
        require = []
        """)
    assert 'rules[0].direction: "incoming" is not a direction' in error


def test_unknown_rule_key_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, """
        [[rules]]
        name = "x"
        requires = ["signed"]
        require = []
        """)
    assert error.endswith('rules[0].requires: unknown key (did you mean "require"?)')


def test_rule_without_require_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, '[[rules]]\nname = "x"\n')
    assert 'rules[0].require: missing in rule "x"' in error


def test_duplicate_rule_name_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, TWO_RULES.replace('"second"', '"first"'))
    assert 'rules[1].name: "first" is already the name of an earlier rule' in error


def test_glob_that_cannot_match_an_address_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, """
        [[rules]]
        name = "x"
        senders = ["example.com"]
        require = []
        """)
    assert 'rules[0].senders[0]: "example.com" cannot match an address' in error


def test_empty_glob_list_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, """
        [[rules]]
        name = "x"
        recipients = []
        require = []
        """)
    assert "rules[0].recipients: an empty array matches no message" in error


def test_policy_without_rules_is_an_error(tmp_path: Path) -> None:
    [error] = policy_errors(tmp_path, '[defaults]\naction = "tag"\n')
    assert error.startswith(f"{tmp_path / 'policy.toml'}: rules: no rules")


def test_every_policy_error_is_collected(tmp_path: Path) -> None:
    errors = policy_errors(tmp_path, """
        colour = "blue"
        [defaults]
        action = "drop"
        [actions]
        nope = "reject"
        [[rules]]
        name = "a"
        direction = "sideways"
        require = ["signd"]
        action = "maybe"
        [[rules]]
        require = []
        """)
    keys = [e.split(": ")[1] for e in errors]
    assert keys == ["colour", "defaults.action", "actions.nope", "rules[0].direction",
                    "rules[0].require[0]", "rules[0].action", "rules[1].name"]
