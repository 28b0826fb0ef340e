"""Purchase options: a discount off the list price per instance type or per account (Savings Plans, Reserved
capacity, a negotiated rate), applied to every cost series; the list price stays exported beside it.

Config (file only):

    discounts:
      instance_types: {ml.g5.12xlarge: 30%, "ml.p4d.*": 0.4}   # exact type or a glob
      accounts: {"123456789012": 20%}

The most specific match wins, not the sum: an exact instance type, then the longest matching glob, then the
account, else none. A discount is a fraction of the list price, 0 <= d < 1, written 0.3 or 30%.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from ..settings import mapping


def fraction(key: Any, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"{key}: must be a fraction like 0.3 or a percentage like 30%")
    text = str(raw).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{key}: must be a fraction like 0.3 or a percentage like 30%, got {raw!r}") from None
    if math.isnan(value) or not 0 <= value < 1:
        raise ValueError(f"{key}: must be at least 0 and less than 100%, got {raw!r}")
    return value


@dataclass(frozen=True)
class Discounts:
    instance_types: dict[str, float] = field(default_factory=dict)
    accounts: dict[str, float] = field(default_factory=dict)

    def rate(self, instance_type: str | None, account: str | None) -> float:
        """The fraction off the list price for this instance type in this account (0: none)."""
        if instance_type and instance_type in self.instance_types:
            return self.instance_types[instance_type]
        globs = [g for g in self.instance_types if instance_type and fnmatch.fnmatchcase(instance_type, g)]
        if globs:
            return self.instance_types[max(globs, key=len)]
        return self.accounts.get(account or "", 0.0)


def discounts(raw: Any) -> Discounts:
    """The `discounts` setting (file only)."""
    values = mapping(raw)
    unknown = set(values) - {"instance_types", "accounts"}
    if unknown:
        raise ValueError(f"unknown key {sorted(map(str, unknown))[0]!r} (use instance_types and accounts)")
    types = {str(k): fraction(k, v) for k, v in mapping(values.get("instance_types")).items()}
    accounts = {}
    for key, value in mapping(values.get("accounts")).items():
        account = str(key)
        if not (account.isdigit() and len(account) == 12):
            raise ValueError(f"accounts: {key!r} is not a 12-digit AWS account id (quote it in YAML)")
        accounts[account] = fraction(key, value)
    return Discounts(types, accounts)
