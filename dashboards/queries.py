"""Every PromQL expression the dashboards run, with Grafana's template variables substituted, so
tests can run them against a real Prometheus.

    from dashboards.queries import all_queries
    for uid, title, expr in all_queries({"region": ".*", "endpoint": "demo-llm", "variant": ".*", "instance": ".*",
                                         "gpu": ".*"}):
        prometheus.query(expr)
"""

from __future__ import annotations

import re
import typing

from . import UIDS, load

# Grafana's built-in variables, with values that make sense for an instant query.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)

# Panels that are empty in a healthy stack by design (nothing to report), as (dashboard uid, panel title).
# An end-to-end "every panel returns data" check should expect these to be empty or skip them.
MAY_BE_EMPTY: frozenset[tuple[str, str]] = frozenset({
    ("mlscope-wall", "Rightsizing savings"),        # needs `mlscope rightsize --serve` scraped
    ("mlscope-endpoints", "Budget exhausted in"),   # no value while no request fails ("not burning")
    ("mlscope-gpus", "Clock throttle reasons"),     # needs gpu_clock_throttle_active series (GPU present)
    ("mlscope-gpus", "Per-process GPU memory"),     # no process holds GPU memory
    ("mlscope-gpus", "ECC and Xid errors per hour"),  # gpu_xid_errors_total appears on the first Xid event
    ("mlscope-gpus", "SM activity, occupancy and tensor activity (GPM)"),  # pre-Hopper GPUs have no GPM
    ("mlscope-stack", "CloudWatch errors"),          # mlscope_cloudwatch_errors_total appears on the first error
    ("mlscope-hosts", "Memory and swap used"),      # swap series only on hosts with swap (memory is always there)
})


def substitute(expr: str, variables: typing.Mapping[str, str]) -> str:
    """Replace $name / ${name} / ${name:format} with variables[name] (built-ins default as above)."""
    values = {**BUILTIN_VARIABLES, **variables}

    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return str(values[name])

    return _VARIABLE.sub(repl, expr)


def _panels(model: dict) -> typing.Iterator[dict]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])   # collapsed rows keep their panels inside


def panel_targets(uid: str) -> typing.Iterator[tuple[str, dict]]:
    """(panel title, target) for every target of every non-row panel of one dashboard."""
    for panel in _panels(load(uid)):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            yield panel.get("title", ""), target


def all_queries(variables: typing.Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Every panel query as (dashboard_uid, panel_title, expr) with template variables substituted.

    `variables` gives the dashboards' own variables: region, endpoint, variant (mlscope-endpoints),
    instance, gpu (mlscope-gpus, mlscope-hosts). Use a real value ("demo-llm") or ".*" (Grafana's All). Built-ins
    ($__rate_interval → 1m, $__range → 1h, $__interval → 1m) have defaults and can be overridden.
    A variable that is used but not given raises KeyError.
    """
    out = []
    for uid in UIDS:
        for title, target in panel_targets(uid):
            out.append((uid, title, substitute(target["expr"], variables or {})))
    return out


def annotation_queries() -> list[tuple[str, str, str]]:
    """(dashboard_uid, annotation name, expr) of every Prometheus annotation query."""
    out = []
    for uid in UIDS:
        for anno in load(uid).get("annotations", {}).get("list", []):
            if anno.get("datasource", {}).get("type") == "prometheus":
                out.append((uid, anno["name"], anno["expr"]))
    return out


def variable_queries(variables: typing.Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard_uid, variable name, PromQL selector) for every label_values() variable: the series
    selector Grafana sends to /api/v1/series (label_values(metric, label) → metric)."""
    out = []
    for uid in UIDS:
        for var in load(uid).get("templating", {}).get("list", []):
            match = _LABEL_VALUES.match(var.get("query", ""))
            assert match, f"{uid} variable {var.get('name')}: unsupported query {var.get('query')!r}"
            selector = match.group(1) or "{__name__=~\".+\"}"
            out.append((uid, var["name"], substitute(selector, variables or {})))
    return out


__all__ = ["BUILTIN_VARIABLES", "MAY_BE_EMPTY", "all_queries", "annotation_queries", "panel_targets",
           "substitute", "variable_queries"]
