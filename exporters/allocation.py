"""`mlscope allocation [--config FILE] [--output FILE] [--check]`: cost allocation and budget rules.

Reads alerts/allocation.yml (allocation keys, the calendar month's UTC offset, monthly budgets) and writes
the Prometheus rule file alerts/allocation.rules.yml: spend per allocation-key value with an `(untagged)`
bucket, month-to-date spend, forecast month-end spend, budgets as constant series, and budget alerts.
PromQL cannot take a rule's labels or constants from a file, hence a generated file (docs/cost.md).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .cli import OneLineParser, fail
from .settings import SettingError, non_negative_number, read_yaml_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "alerts" / "allocation.yml"
DEFAULT_OUTPUT = ROOT / "alerts" / "allocation.rules.yml"
DEFAULT_KEYS = ("team", "project", "cost-center")
UNTAGGED = "(untagged)"
RUNBOOK = "{{ $externalLabels.runbook_base }}#"  # runbook_base: an external label (prometheus.yml)
_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")
_OFFSET_RE = re.compile(r"^([+-])(\d{1,2}):(00|30|45)$")


def label_of(key: str) -> str:
    """`cost-center` -> `cost_center`: the label a tag key becomes (as the SageMaker exporter's tag_<key>)."""
    return _LABEL_RE.sub("_", key)


@dataclass(frozen=True)
class Allocation:
    keys: tuple[str, ...] = DEFAULT_KEYS
    utc_offset_minutes: int = 0
    fleet_budget: float | None = None
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)   # key label -> value -> $/month

    @property
    def labels(self) -> list[str]:
        return [label_of(k) for k in self.keys]


def _offset(raw: Any) -> int:
    """Minutes east of UTC: `"+05:30"` (quoted: YAML 1.1 reads an unquoted 2:00 as 120) or a number of hours;
    whole hours, or :30 and :45 as time zones have them (India +05:30, Nepal +05:45)."""
    minutes = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        minutes = raw * 60
    elif isinstance(raw, str) and (match := _OFFSET_RE.match(raw.strip())):
        minutes = (int(match.group(2)) * 60 + int(match.group(3))) * (-1 if match.group(1) == "-" else 1)
    if minutes is None or not -12 * 60 <= minutes <= 14 * 60:
        raise ValueError('must be from -12:00 to +14:00, whole hours or :30 or :45, as a number of hours or a '
                         f'quoted "+05:30", got {raw!r}')
    return minutes


def step_seconds(offset_minutes: int) -> int:
    """The month-to-date rules sum steps that never straddle local midnight: an hour, or the offset's half or
    quarter hour."""
    return 3600 if offset_minutes % 60 == 0 else 1800 if offset_minutes % 30 == 0 else 900


def allocation_keys(raw: Any) -> tuple[str, ...]:
    """Tag keys that allocate cost: a YAML list, or `team,cost-center` from a flag or an env var."""
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, tuple):
        raw = list(raw)
    if not isinstance(raw, list) or not raw or not all(isinstance(k, str) for k in raw):
        raise ValueError("must be a non-empty list of tag keys")
    labels = [label_of(k) for k in raw]
    for key, label in zip(raw, labels):
        if not re.match(r"^[a-z][a-z0-9_]*$", label):
            raise ValueError(f"{key!r}: a key must start with a lower-case letter (it names recording rules)")
    if len(set(labels)) != len(labels):
        raise ValueError("two keys become the same label")
    return tuple(raw)


def parse(doc: Any, source: str = "allocation config") -> Allocation:
    """The allocation file as read from YAML; any problem is one SettingError line naming the setting."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SettingError(f"{source}: must be a YAML mapping")
    unknown = set(doc) - {"allocation_keys", "utc_offset", "budgets"}
    if unknown:
        raise SettingError(f"{source}: unknown setting {sorted(unknown)[0]!r}")
    try:
        keys = allocation_keys(doc.get("allocation_keys", list(DEFAULT_KEYS)))
    except ValueError as exc:
        raise SettingError(f"allocation_keys in {source}: {exc}") from None
    try:
        offset = _offset(doc.get("utc_offset", "+00:00"))
    except ValueError as exc:
        raise SettingError(f"utc_offset in {source}: {exc}") from None
    budgets_raw = doc.get("budgets") or {}
    if not isinstance(budgets_raw, dict):
        raise SettingError(f"budgets in {source}: must be a mapping of fleet and allocation keys")
    fleet, budgets = None, {}
    by_label = {label_of(k): k for k in keys}
    for key, values in budgets_raw.items():
        where = f"budgets.{key} in {source}"
        try:
            if key == "fleet":
                fleet = non_negative_number(values)
                continue
            if label_of(str(key)) not in by_label:
                raise ValueError(f"not an allocation key (allocation_keys: {', '.join(keys)})")
            if not isinstance(values, dict):
                raise ValueError("must map each value of the key to a monthly budget in dollars")
            budgets[label_of(str(key))] = {str(v): non_negative_number(d) for v, d in values.items()}
        except ValueError as exc:
            raise SettingError(f"{where}: {exc}") from None
    return Allocation(keys, offset, fleet, budgets)


def load(path: str | Path = DEFAULT_CONFIG) -> Allocation:
    return parse(read_yaml_file(str(path), "--config"), str(path))


# ---------------------------------------------------------------- PromQL

ENDPOINT_BY = "account, region, endpoint"
ENDPOINT_PER_HOUR = "endpoint:sagemaker_budgeted_cost_dollars_per_hour:sum"


def _by(labels: str | None) -> str:
    return f"({labels})" if labels else "()"


def spend_expr(label: str) -> str:
    """$/hour per value of one key: endpoints by their tag_<label>, hosts by their <label> label; every
    series without one (or whose endpoint has no info series) goes to (untagged), so the parts add up to
    fleet:mlscope_cost_dollars_per_hour:sum."""
    tag = f"tag_{label}"
    endpoints = (f'label_replace(label_replace(\n'
                 f'      sagemaker_variant_hourly_cost_dollars\n'
                 f'        * on (account, region, endpoint) group_left ({tag})\n'
                 f'          max by (account, region, endpoint, {tag}) (sagemaker_endpoint_info)\n'
                 f'      or on (account, region, endpoint, variant) sagemaker_variant_hourly_cost_dollars,\n'
                 f'      "{label}", "$1", "{tag}", "(.+)"), "{label}", "{UNTAGGED}", "{label}", "")')
    hosts = (f'label_replace(max by (instance, {label}) (mlscope_host_hourly_cost_dollars),\n'
             f'      "{label}", "{UNTAGGED}", "{label}", "")')
    sm = f"sum by ({label}) (\n    {endpoints}\n  )"
    node = f"sum by ({label}) (\n    {hosts}\n  )"
    return f"  {sm}\n+ on ({label})\n  {node}\nor\n  {sm}\nor\n  {node}\n"


def _local_time(offset: int) -> str:
    return f"(time() + {offset * 60})" if offset else "time()"


def month_to_date_expr(per_hour: str, by_labels: str | None, offset: int) -> str:
    """Hourly cost integrated over the calendar month: each whole hour (half or quarter hour at a :30 or :45
    offset) is the mean of its samples ([59m]: a range includes both ends, and the sample on the previous hour
    mark is that hour's) x its length in hours, labelled with the month it lies in, and only the current
    month's steps are summed (a 31-day window holds every one of the month); the running step adds the current
    rate x the part of it that has passed."""
    t = _local_time(offset)
    step = step_seconds(offset)
    by = f"sum by {_by(by_labels)}"
    every = "1h" if step == 3600 else f"{step // 60}m"
    hours = "" if step == 3600 else f" * {step / 3600:g}"
    return (f"{by} (\n"
            f"    (\n"
            f"      sum_over_time((\n"
            f"        avg_over_time({per_hour}[{step // 60 - 1}m])\n"
            f'          * on () group_left (month) count_values("month", month(vector({t} - {step})))\n'
            f"      )[31d:{every}]){hours}\n"
            f'      and on (month) count_values("month", month(vector({t})))\n'
            f"    )\n"
            f"  or\n"
            f'    label_replace({per_hour} * ({t} % {step} / 3600), "month", "running hour", "", "")\n'
            f")\n")


def hours_left_expr(offset: int) -> str:
    t = _local_time(offset)
    return (f"(\n    (scalar(days_in_month(vector({t}))) - scalar(day_of_month(vector({t}))) + 1) * 24\n"
            f"    - ({t} % 86400) / 3600\n  )")


def forecast_expr(mtd: str, per_hour: str, by_labels: str | None, offset: int) -> str:
    """Month-to-date + the trailing 7-day mean rate x the hours left in the month."""
    on = f"on {_by(by_labels)}"
    return (f"  {mtd}\n+ {on}\n  avg_over_time({per_hour}[7d]) * {hours_left_expr(offset)}\n")


ALERTS = [   # name, series, ratio to the budget that fires, for, summary, description
    ("MLScopeBudgetNearlySpent", "month_to_date", ">= 0.8 < 1", "15m",
     "has spent 80% of its monthly budget",
     "has spent {{ $value | humanizePercentage }} of its monthly budget this month."),
    ("MLScopeBudgetExceeded", "month_to_date", ">= 1", "15m",
     "has spent its monthly budget",
     "has spent {{ $value | humanizePercentage }} of its monthly budget this month."),
    ("MLScopeBudgetForecastExceeded", "forecast_month_end", "> 1", "1h",
     "is forecast to exceed its monthly budget",
     "is forecast to spend {{ $value | humanizePercentage }} of its monthly budget by the end of the month "
     "(month-to-date + the trailing 7-day mean rate x the hours left)."),
]


def _alerts(level: str, by_labels: str | None, who: str, allocation_key: str) -> list[dict]:
    on = f"on {_by(by_labels)}"
    out = []
    for name, series, comparison, for_, summary, description in ALERTS:
        out.append({
            "alert": name,
            "expr": f"{level}:mlscope_cost_dollars:{series}\n  / {on} {level}:mlscope_budget_dollars_per_month:value"
                    f"\n  {comparison}\n",
            "for": for_,
            "labels": {"severity": "ticket", "allocation_key": allocation_key},
            "annotations": {"summary": f"{who} {summary}", "description": f"{who} {description}",
                            "runbook_url": RUNBOOK + name.lower()},
        })
    return out


def _budget_rules(level: str, label: str | None, budgets: dict[str, float]) -> list[dict]:
    record = f"{level}:mlscope_budget_dollars_per_month:value"
    if label is None:
        return [{"record": record, "expr": f"vector({budgets['']:g})"}]
    return [{"record": record, "expr": f"vector({dollars:g})", "labels": {label: value}}
            for value, dollars in sorted(budgets.items())]


def _endpoint_budget_rules(offset: int) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """Endpoints with the tag mlscope:budget-monthly-dollars (the exporter's
    sagemaker_endpoint_budget_monthly_dollars): the same month, forecast and alerts, for those endpoints only
    (a 31-day subquery per endpoint is not free: endpoints without a budget are left out)."""
    mtd = "endpoint:mlscope_cost_dollars:month_to_date"
    spend = [{"record": ENDPOINT_PER_HOUR,
              "expr": f"sum by ({ENDPOINT_BY}) (sagemaker_variant_hourly_cost_dollars)\n"
                      f"and on ({ENDPOINT_BY}) sagemaker_endpoint_budget_monthly_dollars\n"}]
    month = [{"record": mtd, "expr": month_to_date_expr(ENDPOINT_PER_HOUR, ENDPOINT_BY, offset)},
             {"record": "endpoint:mlscope_cost_dollars:forecast_month_end",
              "expr": forecast_expr(mtd, ENDPOINT_PER_HOUR, ENDPOINT_BY, offset)}]
    budgets = [{"record": "endpoint:mlscope_budget_dollars_per_month:value",
                "expr": f"max by ({ENDPOINT_BY}) (sagemaker_endpoint_budget_monthly_dollars)"}]
    return spend, month, budgets, _alerts("endpoint", ENDPOINT_BY, "endpoint {{ $labels.endpoint }}", "endpoint")


def rule_groups(cfg: Allocation) -> list[dict]:
    levels: list[tuple[str, str | None]] = [(label, label) for label in cfg.labels] + [("fleet", None)]
    spend, month, budgets, alerts = _endpoint_budget_rules(cfg.utc_offset_minutes)
    for level, label in levels:
        per_hour = f"{level}:mlscope_cost_dollars_per_hour:sum"
        mtd = f"{level}:mlscope_cost_dollars:month_to_date"
        if label:
            spend.append({"record": per_hour, "expr": spend_expr(label)})
        month.append({"record": mtd, "expr": month_to_date_expr(per_hour, label, cfg.utc_offset_minutes)})
        month.append({"record": f"{level}:mlscope_cost_dollars:forecast_month_end",
                      "expr": forecast_expr(mtd, per_hour, label, cfg.utc_offset_minutes)})
        values = {"": cfg.fleet_budget} if label is None and cfg.fleet_budget is not None else \
            cfg.budgets.get(label, {}) if label else {}
        if values:
            budgets += _budget_rules(level, label, values)
            who = f"{label} {{{{ $labels.{label} }}}}" if label else "The fleet"
            alerts += _alerts(level, label, who, label or "fleet")
    return [{"name": "mlscope-allocation", "rules": spend},
            {"name": "mlscope-allocation-month", "rules": month},
            {"name": "mlscope-budgets", "rules": budgets},
            {"name": "mlscope-budget-alerts", "rules": alerts}]


class _Literal(str):
    pass


def _literal(dumper: yaml.Dumper, text: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")


def render(cfg: Allocation, source: str = "alerts/allocation.yml") -> str:
    groups = rule_groups(cfg)
    for group in groups:
        for rule in group["rules"]:
            if "\n" in rule["expr"]:
                rule["expr"] = _Literal(rule["expr"].lstrip())
    dumper = type("Dumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Literal, _literal)
    sign, minutes = "-" if cfg.utc_offset_minutes < 0 else "+", abs(cfg.utc_offset_minutes)
    offset = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    head = (f"# GENERATED by `mlscope allocation` from {Path(source).name}: edit that, not this (docs/cost.md).\n"
            f"# Allocation keys: {', '.join(cfg.keys)}; calendar months at UTC{offset}.\n")
    return head + yaml.dump({"groups": groups}, Dumper=dumper, sort_keys=False, width=120)


def main(argv: Sequence[str]) -> int:
    prog = "mlscope allocation"
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="allocation keys, UTC offset and budgets (YAML)")
    parser.add_argument("--output", default=None, help="rule file to write (default: standard output)")
    parser.add_argument("--check", action="store_true", help="exit 1 if --output differs from what would be written")
    args = parser.parse_args(argv)
    try:
        text = render(load(args.config), args.config)
    except SettingError as exc:
        fail(prog, str(exc))
    if not args.output:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run mlscope allocation --config {args.config} --output {out}",
                  file=sys.stderr)
            return 1
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(prog, f"--output: cannot write {out}: {exc.strerror or exc}")
    return 0


__all__ = ["Allocation", "allocation_keys", "label_of", "load", "main", "parse", "render", "rule_groups"]
