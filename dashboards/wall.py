"""mlscope-wall: the TV across the room, and Grafana's home dashboard. Open it with /d/mlscope-wall?kiosk

Top to bottom, the way an on-call engineer reads it: is anything paging; which endpoint is in
trouble (one row per endpoint, coloured by burn rate, p99 ÷ objective, data age and status) and, beside
it, which self-hosted model is (one row per model, judged the same way, plus IDLE and DOWN); then
six golden numbers, each coloured against its objective. No rows, no variables, 30 s refresh; it fits
1920×1080 with room to spare at 125 % zoom (at most 20 grid rows), no panel is smaller than 4×4 and
no stat shows more than 6 values (tests/test_dashboards.py checks all three).
"""

from __future__ import annotations

from . import promql
from .promql import state
from .panels import (Q, Section, build_dashboard, column_link, column_thresholds, high_bad, low_bad, neutral,
                     stat_panel, steps, table_panel, value_range, value_text, BLUE, GREEN, ORANGE, RED)
from grafana_foundation_sdk.models import dashboard

UID = "mlscope-wall"
TITLE = "MLScope / Wall"

ENDPOINTS = ("Endpoints", "/d/mlscope-endpoints")
MODELS = ("Models", "/d/mlscope-models")
COST = ("Cost", "/d/mlscope-cost")
STACK = ("Monitoring stack", "/d/mlscope-stack")
# Grafana's alerting UI reads the Alertmanager datasource (provisioning/grafana/datasources): alert
# groups as Alertmanager holds them, silences and inhibitions applied.
PAGES_IN_ALERTMANAGER = ("Pages in Alertmanager (silences and inhibitions applied)",
                         "/alerting/groups?alertmanager=Alertmanager&queryString=severity%3Dpage")

SAVINGS = "sum(clamp_min(mlscope_rightsizing_estimated_monthly_savings_dollars, 0))"

# The default objective is 0.999 (docs/recording-rules.md): orange under it, red under 99 %.
AVAILABILITY = low_bad(0.99, 0.999)
LATENCY = high_bad(promql.LATENCY_WARN, promql.LATENCY_BAD)
BURN_COLUMN = [(None, GREEN), (promql.BURN_WARN, ORANGE), (promql.BURN_PAGE, RED)]

# Self-hosted models (alerts/models.rules.yml, labels job, instance, model), judged like endpoints: the
# 1-hour burn rates of an error budget (the endpoints' default objective, 99.9 % of requests succeed) and
# of the latency budget the model alerts use (99 % within 1 s; vLLM: to the first token). Servers without
# a latency histogram (Triton, TorchServe) are judged by their mean latency ÷ 1 s instead.
MODEL = "job, instance, model"
MODEL_ERROR_BUDGET = 0.001
MODEL_LATENCY_BUDGET = 0.01
MODEL_LATENCY_OBJECTIVE_SECONDS = 1
# A model is remembered for a day after its last series, so a dead server reads DOWN, not "no data".
MODEL_MEMORY = "1d"
IDLE, DOWN = -1, 3
MODEL_HEALTH_TEXT = {str(IDLE): ("IDLE", BLUE), **promql.HEALTH_TEXT, str(DOWN): ("DOWN", RED)}


def banner():
    pages = stat_panel(
        "Paging", [Q(promql.pages_notifying(), "pages")], "suffix: PAGES", steps(GREEN, (1, RED)), w=16, h=4,
        graph=False, color_background=True, value_size=60, links=[PAGES_IN_ALERTMANAGER, STACK],
        mappings=[value_range(0, 0, "NOTHING PAGING", GREEN), value_range(1, 1, "1 PAGE", RED, 1),
                  value_range(promql.PAGES_UNKNOWN, promql.PAGES_UNKNOWN, "PAGES UNKNOWN", ORANGE, 2)],
        description="Alerts with severity=page that Alertmanager is sending on now: silenced and inhibited ones "
                    "do not count, nor do tickets and the Watchdog (mlscope alertmanager-exporter polls "
                    "Alertmanager's API). PAGES UNKNOWN (orange): that exporter is down or cannot reach "
                    "Alertmanager, so nobody can say; the Monitoring stack dashboard shows which. The link opens "
                    "Alertmanager's own view.")
    held_back = stat_panel(
        "Pages held back", [Q(promql.pages("silenced"), "silenced"), Q(promql.pages("inhibited"), "inhibited")],
        "none", neutral(), w=4, h=4, graph=False, names=True, links=[PAGES_IN_ALERTMANAGER], no_value="unknown",
        description="Pages Alertmanager does not send on now: silenced by someone, or inhibited by another alert "
                    "(e.g. the exporter that collects an endpoint is down). A page both silenced and inhibited "
                    "counts as silenced.")
    freshness = stat_panel(
        "Data age", [Q("fleet:sagemaker_data_age_seconds:max", "CloudWatch")], "s",
        high_bad(promql.STALE_WARN, promql.STALE_BAD), w=4, h=4, graph=False, decimals=0, links=[STACK],
        description="How old the stalest endpoint's newest settled CloudWatch period is. A few minutes is the "
                    "settle delay; orange from 15 minutes (polls failing), red from 30.")
    return Section(None, [pages, held_back, freshness])


def health_grid():
    grid = table_panel(
        "Endpoint health", [Q(promql.health_state()), Q(f"max by ({promql.EP}) ({promql.burn_rate('1h')})"), Q(promql.latency_ratio("99")),
                            Q(promql.data_age())],
        "none", neutral(), w=13, h=9, merge=True, hide=("Time", "__name__", "account"),
        rename={"Value #A": "health", "Value #B": "burn rate 1h", "Value #C": "p99 ÷ objective",
                "Value #D": "data age"},
        sort_by="health", sort_desc=True, tall_rows=True,
        description="One row per endpoint, worst first. Health is the worst of: the 1-hour error-budget burn rate "
                    f"(at risk from {promql.BURN_WARN}×, failing from the {promql.BURN_PAGE}× paging rate), "
                    f"p99 model latency ÷ objective (at risk from {promql.LATENCY_WARN:.0%}, failing from "
                    f"{promql.LATENCY_BAD:.0%}), CloudWatch data age ({promql.STALE_WARN // 60} / "
                    f"{promql.STALE_BAD // 60} min) and status (changing: at risk; out of service or no running "
                    "instance: failing). Click an endpoint for its dashboard.")
    grid = grid.override_by_name("health", [
        dashboard.DynamicConfigValue(id_val="mappings", value=[value_text(promql.HEALTH_TEXT)]),
        dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background",
                                                                         "mode": "basic"})])
    grid = column_thresholds(grid, "burn rate 1h", BURN_COLUMN, unit="none")
    grid = column_thresholds(grid, "p99 ÷ objective", [(None, GREEN), (promql.LATENCY_WARN, ORANGE),
                                                       (promql.LATENCY_BAD, RED)], unit="percentunit")
    grid = column_thresholds(grid, "data age", [(None, GREEN), (promql.STALE_WARN, ORANGE),
                                                (promql.STALE_BAD, RED)], unit="s")
    grid = column_link(grid, "endpoint", "Open ${__data.fields.endpoint}",
                       "/d/mlscope-endpoints?var-region=${__data.fields.region}"
                       "&var-endpoint=${__data.fields.endpoint}&${__url_time_range}")
    return Section(None, [grid, model_grid()])


def model_error_burn() -> str:
    return f"model:errors:ratio_rate1h / {MODEL_ERROR_BUDGET}"


def model_latency_burn() -> str:
    return f"model:latency_slo_violations:ratio_rate1h / {MODEL_LATENCY_BUDGET}"


def model_down() -> str:
    """DOWN for each model whose server's target is down: every target of its job on its machine (vLLM,
    Triton, TorchServe name their models in their series, which a dead server no longer has), or its own
    target where the target names the model (model-http, mlserver)."""
    seen = f"group by ({MODEL}) (last_over_time(model:requests:rate5m[{MODEL_MEMORY}]))"
    return (f"({seen} and on (job, instance) (max by (job, instance) (up{{model=\"\"}}) == 0)"
            f" or group by ({MODEL}) (up{{model!=\"\"}} == 0)) * {DOWN}")


def model_health() -> str:
    """-1 IDLE (no request in 5 minutes, nothing at risk), 0 OK, 1 AT RISK, 2 FAILING, 3 DOWN: the worst of
    traffic (-1 idle, 0 serving), the error and latency burn rates, mean latency ÷ objective where no
    histogram gives a burn rate, and the target being down. Signals that are fine leave no series, so an
    idle model reads IDLE unless one of them is at risk."""
    mean_latency = (f"model:latency_seconds:mean5m / {MODEL_LATENCY_OBJECTIVE_SECONDS}"
                    f" unless on ({MODEL}) model:latency_slo_violations:ratio_rate1h")
    signals = {
        "traffic": "(model:requests:rate5m > bool 0) - 1",
        "errors": f"{state(model_error_burn(), promql.BURN_WARN, promql.BURN_PAGE)} > 0",
        "latency": f"{state(model_latency_burn(), promql.BURN_WARN, promql.BURN_PAGE)} > 0",
        "mean_latency": f"{state(mean_latency, promql.LATENCY_WARN, promql.LATENCY_BAD)} > 0",
        "down": model_down(),
    }
    parts = " or ".join(f'label_replace({expr}, "signal", "{name}", "", "")' for name, expr in signals.items())
    return f"max by ({MODEL}) ({parts})"


def model_grid():
    grid = table_panel(
        "Model health", [Q(model_health()), Q(f"sum by ({MODEL}) (model:requests:rate5m)"),
                         Q(model_error_burn()), Q(model_latency_burn())],
        "none", neutral(), w=11, h=9, merge=True, hide=("Time", "job", "__name__"),
        rename={"Value #A": "health", "Value #B": "req/s", "Value #C": "errors burn 1h",
                "Value #D": "latency burn 1h"},
        column_units={"req/s": "reqps"}, sort_by="health", sort_desc=True, tall_rows=True, links=[MODELS],
        description="One row per self-hosted model (vLLM, Triton, TorchServe, HTTP servers), worst first, with "
                    "the endpoints' colours. Health is the worst of: the 1-hour error-budget burn rate (objective "
                    f"99.9 % of requests succeed; at risk from {promql.BURN_WARN}×, failing from "
                    f"{promql.BURN_PAGE}×), the 1-hour latency burn rate (objective 99 % within "
                    f"{MODEL_LATENCY_OBJECTIVE_SECONDS} s, vLLM to the first token; same thresholds, as the "
                    "ModelLatencySLOBurn alert), and for Triton and TorchServe, which have no latency histogram, "
                    f"mean latency ÷ {MODEL_LATENCY_OBJECTIVE_SECONDS} s (at risk from "
                    f"{promql.LATENCY_WARN:.0%}, failing from {promql.LATENCY_BAD:.0%}). IDLE (blue): no request "
                    "in 5 minutes and nothing at risk. DOWN (red): Prometheus cannot scrape the model's server. "
                    "Click a model for its dashboard.")
    grid = grid.override_by_name("health", [
        dashboard.DynamicConfigValue(id_val="mappings", value=[value_text(MODEL_HEALTH_TEXT)]),
        dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background",
                                                                         "mode": "basic"})])
    for column in ("errors burn 1h", "latency burn 1h"):
        grid = column_thresholds(grid, column, BURN_COLUMN, unit="none")
    return column_link(grid, "model", "Open ${__data.fields.model}",
                       "/d/mlscope-models?var-model=${__data.fields.model}&${__url_time_range}")


def golden_numbers():
    return Section(None, [
        stat_panel("Availability 30d", [Q("fleet:sagemaker_availability:ratio_rate30d", "30d")], "percentunit",
                   AVAILABILITY, h=5, decimals=3, graph=False, links=[ENDPOINTS],
                   description="Time-based: 1 − downtime / total time over 30 days, the mean over endpoints. "
                               "Orange under the default 99.9 % objective, red under 99 %."),
        stat_panel("Requests/s", [Q("fleet:sagemaker_requests:rate5m", "req/s")], "reqps", neutral(), h=5,
                   links=[ENDPOINTS], description="Invocations per second, all endpoints (5 m). Traffic has no "
                                                  "good or bad level, so it is not coloured."),
        stat_panel("Latency ÷ objective",
                   [Q(f"max({promql.latency_ratio('95')})", "p95"), Q(f"max({promql.latency_ratio('99')})", "p99")],
                   "percentunit", LATENCY, h=5, decimals=0, names=True, graph=False, links=[ENDPOINTS],
                   description="The worst endpoint's p95 and p99 model latency as a share of its latency objective. "
                               "Orange from 80 %, red from 100 % (objective missed)."),
        stat_panel("Error budget left", [Q("fleet:sagemaker_error_budget_remaining:min_ratio_30d", "worst")],
                   "percentunit", low_bad(0.25, 0.5), h=5, decimals=0, graph=False, links=[ENDPOINTS],
                   description="The smallest 30-day error budget left of any endpoint, against its own objective. "
                               "0 % or less: that endpoint missed its SLO."),
        stat_panel("Spend $/hour", [Q("fleet:mlscope_cost_dollars_per_hour:sum", "$/h")], "currencyUSD", neutral(),
                   h=5, decimals=2, links=[COST],
                   description="SageMaker endpoints + GPU/CPU hosts, dollars per hour now."),
        stat_panel("Rightsizing savings", [Q(SAVINGS, "$/month")], "currencyUSD", neutral(), h=5, decimals=0,
                   graph=False, links=[COST], no_value="no report",
                   description="Dollars per month the rightsizing recommendations would save "
                               "(mlscope rightsize --serve; recommendations that cost more count 0)."),
    ])


def build():
    return build_dashboard(
        UID, TITLE, "MLScope for a TV in kiosk mode: is anything paging, which endpoint or self-hosted model is in "
                    "trouble, and six golden numbers against their objectives.",
        [banner(), health_grid(), golden_numbers()], extra_tags=["overview"], refresh="30s", time_from="now-3h")


__all__ = ["UID", "TITLE", "build"]
