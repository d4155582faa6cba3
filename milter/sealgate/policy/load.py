"""Reading a policy file (SPEC §5), with every error named by file and key.

Keys in errors follow the TOML: ``defaults.action``, ``actions.weak-algorithm``,
``rules[2].require[1]`` (0-based, as in the array of ``[[rules]]`` tables; the
message names the rule too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..addresses import normalize_address
from ..codes import Action, Code, Direction, Requirement
from ..tomlreader import Reader, join_key
from ..units import show
from .rules import Policy, Rule

_TOP_KEYS = ("defaults", "actions", "rules")
_DEFAULTS_KEYS = ("action", "transient_action")
_RULE_KEYS = ("name", "direction", "senders", "recipients", "require", "action")


def _known(values: type) -> str:
    return ", ".join(str(v) for v in values)  # type: ignore[attr-defined]


def _action(reader: Reader, key: str, value: Any) -> Action | None:
    try:
        return Action(value)
    except ValueError:
        reader.error(key, f"{show(value)} is not an action (use {_known(Action)})")
        return None


def _table(reader: Reader, key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    reader.error(key, f"{show(value)} is not a table (write [{key}])")
    return {}


def _globs(reader: Reader, key: str, value: Any, rule: str) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        reader.error(key, f"{show(value)} is not an array of address globs "
                     f"(write [\"*@example.com\"]) in rule {show(rule)}")
        return None
    if not value:
        reader.error(key, f"an empty array matches no message in rule {show(rule)} "
                     "(remove the key to match every address)")
        return None
    out = []
    for i, glob in enumerate(value):
        if not isinstance(glob, str):
            reader.error(f"{key}[{i}]", f"{show(glob)} is not a string in rule {show(rule)}")
        elif glob != "" and "@" not in glob and glob != "*":
            reader.error(f"{key}[{i}]", f"{show(glob)} cannot match an address in rule "
                         f"{show(rule)} (write \"*@example.com\", \"alice@example.com\", "
                         "or \"\" for the null sender)")
        else:
            out.append(normalize_address(glob))
    return tuple(out)


def _rule(reader: Reader, index: int, table: Any, names: set[str]) -> Rule | None:
    prefix = f"rules[{index}]"
    if not isinstance(table, dict):
        reader.error(prefix, f"{show(table)} is not a table (write [[rules]])")
        return None
    reader.check_keys(table, prefix, _RULE_KEYS)
    errors_before = len(reader.errors)

    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        reader.error(f"{prefix}.name", "every rule needs a name (it is written in the "
                     "Sealgate-Policy header), e.g. name = \"internal\"")
        name = f"rules[{index}]"
    elif name in names:
        reader.error(f"{prefix}.name", f"{show(name)} is already the name of an earlier rule")
    names.add(name)

    direction = Direction.ANY
    if "direction" in table:
        try:
            direction = Direction(table["direction"])
        except ValueError:
            reader.error(f"{prefix}.direction", f"{show(table['direction'])} is not a "
                         f"direction (use {_known(Direction)}) in rule {show(name)}")

    senders = recipients = None
    if "senders" in table:
        senders = _globs(reader, f"{prefix}.senders", table["senders"], name)
    if "recipients" in table:
        recipients = _globs(reader, f"{prefix}.recipients", table["recipients"], name)

    require: set[Requirement] = set()
    if "require" not in table:
        # Explicit on purpose: a forgotten key must not mean "accept everything".
        reader.error(f"{prefix}.require", f"missing in rule {show(name)} (list requirements, "
                     "or write require = [] to accept every message this rule matches)")
    elif not isinstance(table["require"], list):
        reader.error(f"{prefix}.require", f"{show(table['require'])} is not an array "
                     f"of requirements in rule {show(name)}")
    else:
        for i, item in enumerate(table["require"]):
            try:
                require.add(Requirement(item))
            except ValueError:
                reader.error(f"{prefix}.require[{i}]", f"unknown requirement {show(item)} in "
                             f"rule {show(name)} (known: {_known(Requirement)})")

    action = None
    if "action" in table:
        action = _action(reader, f"{prefix}.action", table["action"])

    if len(reader.errors) > errors_before:
        return None
    return Rule(name=name, require=frozenset(require), direction=direction,
                senders=senders, recipients=recipients, action=action)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raises ConfigErrors listing every problem."""
    path = Path(path)
    reader = Reader(path)
    document = reader.document()
    reader.check_keys(document, "", _TOP_KEYS)

    defaults = _table(reader, "defaults", document.get("defaults", {}))
    reader.check_keys(defaults, "defaults", _DEFAULTS_KEYS)
    default_action = _action(reader, "defaults.action", defaults.get("action", "quarantine"))
    transient_action = _action(reader, "defaults.transient_action",
                               defaults.get("transient_action", "tempfail"))

    overrides: dict[Code, Action] = {}
    for code, value in _table(reader, "actions", document.get("actions", {})).items():
        key = join_key("actions", code)
        try:
            parsed = Code(code)
        except ValueError:
            reader.error(key, f"unknown violation code (known: {_known(Code)})")
            continue
        action = _action(reader, key, value)
        if action is not None:
            overrides[parsed] = action

    raw_rules = document.get("rules", [])
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        reader.error("rules", f"{show(raw_rules)} is not an array of tables (write [[rules]])")
    elif not raw_rules:
        reader.error("rules", "no rules: every message would be accepted unchecked "
                     "(add [[rules]] tables; see policies/strict.toml)")
    else:
        names: set[str] = set()
        for index, table in enumerate(raw_rules):
            rule = _rule(reader, index, table, names)
            if rule is not None:
                rules.append(rule)

    reader.raise_if_errors()
    assert default_action is not None and transient_action is not None  # noqa: S101
    return Policy(source=path, rules=tuple(rules), default_action=default_action,
                  transient_action=transient_action, overrides=overrides)
