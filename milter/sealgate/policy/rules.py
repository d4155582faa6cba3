"""The policy decision (SPEC §5): facts + policy + envelope -> verdict.

Pure functions over plain data; no clock, no I/O.

Choices where SPEC §5 is silent, also stated in the shipped policies:

* **Direction of the null sender.** ``<>`` names no domain, so it cannot be
  internal: a bounce is *inbound* whatever its recipients. Policies match
  bounces with ``senders = [""]`` in a rule placed first.
* **Globs.** ``senders``/``recipients`` are :mod:`fnmatch` globs compared
  case-insensitively with the normalised address. ``""`` matches only the
  null sender and a glob never matches it (``"*"`` means "any real address").
  A rule without ``senders`` (or ``recipients``) does not look at them.
* **Recipients must all match.** A message gets one verdict for all its
  recipients, so a rule with ``recipients`` applies only when *every* envelope
  recipient matches one of its globs. An exemption for some recipients can
  then not be widened to others by adding them to the same message.
* **Per-code overrides win over the rule's action**: ``[actions]`` is the
  administrator's statement about a code, whichever rule counts it.
* **No rule matched: accept, rule none.** A policy that wants a default writes
  a last rule without ``direction``/``senders``/``recipients``;
  ``sealgate config check`` warns when some direction can fall through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ..addresses import is_internal, normalize_address
from ..codes import (
    ALWAYS_CODES,
    REQUIREMENT_CODES,
    TRANSIENT_CODES,
    Action,
    Code,
    Direction,
    Requirement,
    strongest,
)
from ..model import Envelope, Facts, Finding, Verdict

NULL_SENDER = ""


def counted_codes(require: frozenset[Requirement]) -> frozenset[Code]:
    """The codes that are violations under a rule requiring ``require`` (SPEC §5)."""
    if not require:
        return frozenset()
    codes = set(ALWAYS_CODES)
    for requirement in require:
        codes |= REQUIREMENT_CODES[requirement]
    return frozenset(codes)


# Rule.counted by requirement set: a policy has a handful.
_COUNTED: dict[frozenset[Requirement], frozenset[Code]] = {}


@dataclass(frozen=True)
class Rule:
    name: str
    require: frozenset[Requirement]
    direction: Direction = Direction.ANY
    senders: tuple[str, ...] | None = None  # None: any sender; globs are lower-case
    recipients: tuple[str, ...] | None = None  # None: any recipients
    action: Action | None = None  # None: defaults.action

    @property
    def counted(self) -> frozenset[Code]:
        """The codes that are violations under this rule (SPEC §5); worked out once per requirement set.

        Kept by ``require`` in a module dict, not by ``functools.cached_property``:
        compiled (mypyc), a cached_property is a plain property, run on every message.
        """
        codes = _COUNTED.get(self.require)
        if codes is None:
            codes = _COUNTED[self.require] = counted_codes(self.require)
        return codes

    @property
    def unconditional(self) -> bool:
        """Matches every message of its direction (no sender or recipient globs)."""
        return self.senders is None and self.recipients is None


@dataclass(frozen=True)
class Policy:
    source: Path
    rules: tuple[Rule, ...]
    default_action: Action = Action.QUARANTINE
    transient_action: Action = Action.TEMPFAIL
    overrides: Mapping[Code, Action] = field(default_factory=dict)

    def action_for(self, code: Code, rule: Rule) -> Action:
        """Per-code override, else transient_action, else the rule's, else the default."""
        if code in self.overrides:
            return self.overrides[code]
        if code in TRANSIENT_CODES:
            return self.transient_action
        return rule.action or self.default_action

    def uncovered_directions(self) -> list[Direction]:
        """Directions for which some message can match no rule (then: accept)."""
        out = []
        for direction in (Direction.INTERNAL, Direction.OUTBOUND, Direction.INBOUND):
            if not any(r.unconditional and r.direction in (direction, Direction.ANY)
                       for r in self.rules):
                out.append(direction)
        return out


def direction_of(envelope: Envelope, internal_domains: Iterable[str]) -> Direction:
    """SPEC §5: internal, outbound (internal sender, ≥1 external recipient) or inbound.

    The null sender is inbound (see the module docstring).
    """
    domains = tuple(internal_domains)
    if not is_internal(envelope.sender, domains):
        return Direction.INBOUND
    if all(is_internal(r, domains) for r in envelope.recipients):
        return Direction.INTERNAL
    return Direction.OUTBOUND


def _address_matches(address: str, globs: tuple[str, ...]) -> bool:
    address = normalize_address(address)
    if address == NULL_SENDER:
        return NULL_SENDER in globs
    return any(g != NULL_SENDER and fnmatchcase(address, g) for g in globs)


def rule_matches(rule: Rule, envelope: Envelope, direction: Direction) -> bool:
    if rule.direction not in (Direction.ANY, direction):
        return False
    if rule.senders is not None and not _address_matches(envelope.sender, rule.senders):
        return False
    if rule.recipients is not None:
        # Every recipient must match; a message without recipients matches no glob list.
        if not envelope.recipients or not all(
            _address_matches(r, rule.recipients) for r in envelope.recipients
        ):
            return False
    return True


def match_rule(policy: Policy, envelope: Envelope, direction: Direction) -> Rule | None:
    """The first rule that matches, or None."""
    return next((r for r in policy.rules if rule_matches(r, envelope, direction)), None)


def decide(facts: Facts, policy: Policy, envelope: Envelope) -> Verdict:
    """Keep the candidate violations the matched rule counts; the strongest action wins."""
    rule = match_rule(policy, envelope, facts.direction)
    violations: list[Finding] = []
    if rule is not None:
        counted = rule.counted
        for finding in facts.candidates:
            if finding.code in counted and finding not in violations:
                violations.append(finding)
    actions = [policy.action_for(f.code, rule) for f in violations] if rule else []
    return Verdict(
        action=strongest(actions, default=Action.ACCEPT),
        rule=rule.name if rule else None,
        direction=facts.direction,
        structure=facts.structure,
        violations=violations,
        signers=list(facts.signers),
        recipients=list(facts.recipients),
        notes=list(facts.notes),
    )
