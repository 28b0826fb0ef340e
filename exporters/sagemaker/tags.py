"""Numeric endpoint tags that MLScope reads (objectives and budgets), exported as gauges.

A tag whose value is not a valid number for its meaning gives no series, one warning line per endpoint,
tag and value, and a count in `mlscope_sagemaker_invalid_tags_total{tag}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


def _number(text: str) -> float:
    value = float(text.strip())
    if math.isnan(value) or math.isinf(value):
        raise ValueError
    return value


def _ratio(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise ValueError
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise ValueError
    return value


@dataclass(frozen=True)
class NumericTag:
    key: str
    metric: str
    parse: Callable[[str], float]
    expected: str
    help: str


NUMERIC_TAGS = (
    NumericTag("mlscope:slo", "sagemaker_endpoint_slo_objective_ratio", _ratio, "a ratio between 0 and 1",
               "Availability objective of the endpoint, 0-1 (tag mlscope:slo)."),
    NumericTag("mlscope:latency-objective-seconds", "sagemaker_endpoint_latency_objective_seconds", _positive,
               "a number of seconds above 0",
               "ModelLatency objective of the endpoint in seconds (tag mlscope:latency-objective-seconds)."),
    NumericTag("mlscope:budget-dollars-per-hour", "sagemaker_endpoint_budget_dollars_per_hour", _non_negative,
               "a number of dollars, 0 or more",
               "Hourly spend budget of the endpoint in dollars (tag mlscope:budget-dollars-per-hour)."),
    NumericTag("mlscope:budget-monthly-dollars", "sagemaker_endpoint_budget_monthly_dollars", _non_negative,
               "a number of dollars, 0 or more",
               "Monthly spend budget of the endpoint in dollars (tag mlscope:budget-monthly-dollars)."),
)
LATENCY_OBJECTIVE = "mlscope:latency-objective-seconds"


def numeric_tags(tags: dict[str, str]) -> tuple[dict[str, float], list[tuple[NumericTag, str]]]:
    """(tag key -> value for the valid ones, [(tag, raw value)] for the invalid ones)."""
    values: dict[str, float] = {}
    invalid: list[tuple[NumericTag, str]] = []
    for tag in NUMERIC_TAGS:
        raw = tags.get(tag.key)
        if raw is None:
            continue
        try:
            values[tag.key] = tag.parse(raw)
        except ValueError:
            invalid.append((tag, raw))
    return values, invalid
