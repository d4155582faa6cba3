"""The policy: which failures count for which mail, and what happens then (SPEC §5).

``load_policy`` reads a policy file (``policy/load.py``); ``direction_of``,
``match_rule`` and ``decide`` are the pure decision (``policy/rules.py``).
"""

from __future__ import annotations

from .load import load_policy
from .rules import Policy, Rule, decide, direction_of, match_rule, rule_matches

__all__ = ["Policy", "Rule", "decide", "direction_of", "load_policy", "match_rule",
           "rule_matches"]
