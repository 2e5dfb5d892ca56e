"""Labels derived from action types, for clients that send what happened rather than a label.

A sample's own `label` always wins. Without one, the rule for its `action_type` decides; a sample
with neither is refused (400), because guessing would teach the model something nobody said.

Rules (LABEL_RULES, JSON; DEFAULT_LABEL_RULES below) map an action type to one of:
  1 or 0 (or any number in [0, 1])                      a constant label
  {"param": "stars", "at_least": 4}                     1 when parameters.stars >= 4, else 0
  {"param": "bounced", "is": true, "label": 0, "otherwise": 1}
                                                        `label` when the parameter equals the value,
                                                        `otherwise` when it differs or is absent
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

DEFAULT_LABEL_RULES: Dict[str, Any] = {
    "purchase": 1, "add_to_cart": 1, "book_tickets": 1, "like": 1, "super_like": 1, "save_wishlist": 1,
    "share": 1, "dislike": 0,
    "rating": {"param": "stars", "at_least": 4},
    "view": {"param": "bounced", "is": True, "label": 0, "otherwise": 1},
    "click": {"param": "bounced", "is": True, "label": 0, "otherwise": 1},
}


class LabelRuleError(ValueError):
    pass


def check_rules(rules: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The rules to apply: LABEL_RULES (Settings.label_rules, a parsed JSON object) checked, or the
    defaults when it is unset. Raises ValueError naming the bad entry."""
    if rules is None:
        return dict(DEFAULT_LABEL_RULES)
    for action_type, rule in rules.items():
        _check(action_type, rule)
    return dict(rules)


def _check(action_type: str, rule: Any) -> None:
    if isinstance(rule, bool) or not isinstance(rule, (int, float, dict)):
        raise ValueError("LABEL_RULES[{!r}]: a number or an object".format(action_type))
    if isinstance(rule, (int, float)) and not 0 <= rule <= 1:
        raise ValueError("LABEL_RULES[{!r}]: a label is between 0 and 1".format(action_type))
    if isinstance(rule, dict) and not ("param" in rule and ("at_least" in rule or "is" in rule)):
        raise ValueError("LABEL_RULES[{!r}]: needs param and at_least, or param, is, label, otherwise".format(
            action_type))


def derive_label(action_type: Optional[str], parameters: Optional[Dict[str, Any]], rules: Dict[str, Any]) -> float:
    """The label the rules give this action, or LabelRuleError saying why there is none."""
    if action_type is None:
        raise LabelRuleError("required (or send an action_type that has a label rule)")
    rule = rules.get(action_type)
    if rule is None:
        raise LabelRuleError("required: no label rule for action_type {!r} (rules exist for {})".format(
            action_type, ", ".join(sorted(rules))))
    if not isinstance(rule, dict):
        return float(rule)
    value = (parameters or {}).get(rule["param"])
    if "at_least" in rule:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LabelRuleError("required: action_type {!r} derives it from a numeric parameters.{}".format(
                action_type, rule["param"]))
        return 1.0 if value >= rule["at_least"] else 0.0
    return float(rule.get("label", 0) if value == rule["is"] else rule.get("otherwise", 1))
