"""End to end: docker-compose.yml as the official compose binary renders it (`docker compose config`), every
service run natively on loopback with that command, environment and mounted configuration (`make local`'s
LocalStack), with on-call played by a webhook.

For speed only, and nowhere else: short Prometheus scrape/evaluation intervals, quick Alertmanager
grouping, the SageMaker exporter's poll interval and settling delay, and a host instance type (so the
host cost panels have a price) are set on top of what compose renders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
import yaml

from helpers import ROOT, WebhookReceiver, require_binary

from mlscope.local import LocalStack, Options, render

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

JOBS = ("host", "gpu", "sagemaker", "rightsizer", "alertmanager-exporter", "prometheus", "alertmanager")


@pytest.fixture(scope="module")
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, receiver):
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    config = rendered()
    options = Options(data_dir=tmp_path_factory.mktemp("stack"), free_ports=True, scrape_interval="2s",
                      evaluation_interval="2s", webhook_url=receiver.url,
                      env={"sagemaker-exporter": {"MLSCOPE_POLL_INTERVAL": "10s", "MLSCOPE_DELAY": "70s"},
                           "host-exporter": {"MLSCOPE_INSTANCE_TYPE": "g5.12xlarge"},
                           # minutes of history: judge them anyway, so the rightsizing panels have options
                           "rightsizer": {"MLSCOPE_INTERVAL": "10s", "MLSCOPE_MIN_HISTORY": "1m"}})
    s = LocalStack(config, options).start()
    yield s
    s.stop()


def rendered() -> dict:
    """What `docker compose up` would run with a fresh checkout's defaults (no .env, no AWS_* or MLSCOPE_*)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "MLSCOPE_", "AWS_"))}
    return render({**clean, "GRAFANA_ADMIN_PASSWORD": "not-a-real-password"}, env_file=os.devnull)


def query(stack: LocalStack, expr: str) -> list[dict]:
    body = requests.get(stack.url("prometheus") + "/api/v1/query", params={"query": expr}, timeout=30).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def wait_query(stack: LocalStack, expr: str, timeout: float = 120, check=lambda r: bool(r)) -> list[dict]:
    deadline = time.monotonic() + timeout
    result: list[dict] = []
    while time.monotonic() < deadline:
        result = query(stack, expr)
        if check(result):
            return result
        time.sleep(1)
    raise AssertionError(f"{expr!r} -> {result} after {timeout}s")


def recording_rules() -> list[str]:
    names = []
    for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["record"] for rule in group["rules"] if "record" in rule]
    return names


def test_all_targets_up(stack):
    for job in JOBS:
        result = wait_query(stack, f'up{{job="{job}"}} == 1', timeout=90)
        assert result, job
    assert not query(stack, "up == 0"), query(stack, "up == 0")


def test_sagemaker_demo_data_flows(stack):
    # the exporter may poll while the demo traffic is still creating endpoints: the rest come a poll later
    result = wait_query(stack, "sagemaker_endpoint_info", timeout=120,
                        check=lambda r: len({x["metric"]["endpoint"] for x in r}) >= 4)
    assert len({r["metric"]["endpoint"] for r in result}) >= 4
    wait_query(stack, 'sagemaker_model_latency_seconds{quantile="0.99"} > 0')
    wait_query(stack, "sagemaker_variant_hourly_cost_dollars > 0")


def test_sagemaker_exporter_reaches_aws_with_the_environment_compose_gives_it(stack):
    # An empty AWS_PROFILE (compose's `${AWS_PROFILE:-}`) made boto3 fail every call with ProfileNotFound.
    wait_query(stack, 'mlscope_collector_up{job="sagemaker"}', timeout=90,
               check=lambda r: r and all(x["value"][1] == "1" for x in r))
    assert "AWS_PROFILE" not in stack.services["sagemaker-exporter"].env


def test_compose_healthchecks_pass(stack):
    """Each MLScope service's own compose healthcheck command, run natively, reports healthy."""
    for name, service in stack.config["services"].items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[1:3] != ["mlscope", "healthcheck"] or name not in stack.services:
            continue
        url = stack.localise(name, test[3], [])
        result = subprocess.run([sys.executable, "-m", "mlscope", "healthcheck", url], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, (name, url, result.stderr)


# SageMaker exporter series of issue 8 (numeric tag gauges, the within-objective counter, p95),
# delivered by the exporter's side of the issue: a rule that reads one of them (by its name's
# fragment) must have data once the exporter serves it, and is excused while it does not.
# Series served only when a user opts in (absent from the demo stack, which polls CloudWatch): queries and
# rules reading them are excused while the series is absent. series -> fragments of the excused queries
OPT_IN_SERIES = {
    "mlscope_metric_stream_cost_dollars_per_month": ("mlscope_metric_stream_",),   # a metric_stream target
}


# Rules that need Kubernetes (GPU -> pod attribution labels the GPU series with `pod`): the local
# stack runs no kubelet, so they record nothing there; alerts/pod.rules.test.yml covers them.
KUBERNETES_ONLY_RULES = ("pod:gpu_cost_dollars_per_hour:",)


def test_every_recording_rule_has_data(stack):
    # give counters time to see a settled CloudWatch period and the rules a few evaluations
    wait_query(stack, "increase(sagemaker_invocations_total[5m]) > 0", timeout=180)
    excused = [fragment for series, fragments in OPT_IN_SERIES.items() if not query(stack, series)
               for fragment in fragments] + list(KUBERNETES_ONLY_RULES)
    missing = []
    for name in recording_rules():
        if any(fragment in name for fragment in excused):
            continue
        deadline = time.monotonic() + 30
        while not query(stack, name):
            if time.monotonic() > deadline:
                missing.append(name)
                break
            time.sleep(1)
    assert not missing, f"recording rules without data: {missing}"
    # and no rule, recording or alerting, fails to evaluate on the real data
    groups = requests.get(stack.url("prometheus") + "/api/v1/rules", timeout=30).json()["data"]["groups"]
    failing = {rule["name"]: rule["lastError"] for group in groups for rule in group["rules"] if rule.get("lastError")}
    assert failing == {}


def test_every_dashboard_query_returns_data(stack):
    from dashboards.queries import all_queries

    # a real-time GPU endpoint with traffic, so the GPU utilization and latency panels have a series to show
    # (the demo's asynchronous endpoint has no OverheadLatency and no Invocations, as on AWS)
    endpoint = wait_query(stack, "sagemaker_instance_gpu_utilization_ratio and on (account, region, endpoint, variant) "
                                 "(sagemaker_overhead_latency_seconds_count > 0)", timeout=180)[0]["metric"]
    gpu = wait_query(stack, "gpu_info")[0]["metric"]
    host = wait_query(stack, 'up{job="host"}')[0]["metric"]
    variables = {"endpoint": endpoint["endpoint"], "variant": endpoint["variant"], "region": endpoint["region"],
                 "instance": host["instance"], "gpu": gpu["gpu"], "model": "demo-llama"}
    # Empty by nature here: no alert but the Watchdog fires, CloudWatch has not failed, and swap exists
    # only on hosts that have some. Every GPU panel must have data: the simulator has processes,
    # throttling, GPM and (zero) Xid counters.
    allowed_empty = {("mlscope-stack", "CloudWatch errors")}
    if not query(stack, "node_memory_SwapTotal_bytes > 0"):
        allowed_empty.add(("mlscope-hosts", "Memory and swap used"))
    if not query(stack, "mlscope_rightsizing_estimated_monthly_savings_dollars"):   # no rightsize --serve
        allowed_empty.add(("mlscope-wall", "Rightsizing savings"))
    wait_query(stack, "increase(sagemaker_invocations_total[5m]) > 0", timeout=180)
    if not query(stack, f'endpoint:sagemaker_error_budget_burn_rate:1d{{endpoint="{endpoint["endpoint"]}"}} > 0'):
        # the chosen endpoint's budget is not burning (no 5xx): "exhausted in" has no value
        allowed_empty.add(("mlscope-endpoints", "Budget exhausted in"))
    # panels reading opt-in series are excused while the stack does not serve them
    excused = [fragment for series, fragments in OPT_IN_SERIES.items() if not query(stack, series)
               for fragment in fragments]
    empty, checked = [], 0
    for uid, title, expr in all_queries(variables):
        if (uid, title) in allowed_empty or any(fragment in expr for fragment in excused):
            query(stack, expr)  # must still be a valid query
            continue
        checked += 1
        deadline = time.monotonic() + 20
        while not query(stack, expr):
            if time.monotonic() > deadline:
                empty.append((uid, title, expr))
                break
            time.sleep(1)
    assert checked > 100
    assert not empty, "panels without data:\n" + "\n".join(map(str, empty))


def test_wall_banner_counts_pages_from_alertmanager(stack):
    """The banner always has a value (-1 reads PAGES UNKNOWN): here it must be Alertmanager's own count."""
    import dashboards

    (banner,) = [p["targets"][0]["expr"] for p in dashboards.load("mlscope-wall")["panels"] if p["title"] == "Paging"]
    # the Watchdog (a ticket) went through Prometheus to Alertmanager and back through the exporter
    wait_query(stack, 'mlscope_alertmanager_alerts{job="alertmanager-exporter",severity="ticket",'
                      'state="notifying"} >= 1', timeout=90)
    assert query(stack, 'mlscope_alertmanager_up{job="alertmanager-exporter"}')[0]["value"][1] == "1"
    assert float(wait_query(stack, banner)[0]["value"][1]) >= 0


def test_watchdog_reaches_on_call_through_alertmanager(stack, receiver):
    alert = receiver.wait_for("Watchdog", timeout=90)
    assert alert["labels"]["alertname"] == "Watchdog"


def test_stopped_exporter_makes_target_down_pending(stack):
    stack.stop_service("host-exporter")
    wait_query(stack, 'up{job="host"} == 0', timeout=30)
    result = wait_query(stack, 'ALERTS{alertname="TargetDown", job="host"}', timeout=60)
    assert result[0]["metric"]["alertstate"] in ("pending", "firing")


def test_prometheus_keeps_its_data_across_restart(stack):
    expr = 'count_over_time(up{job="sagemaker"}[1h])'
    before = float(wait_query(stack, expr)[0]["value"][1])
    stack.restart_service("prometheus")
    after = float(wait_query(stack, expr)[0]["value"][1])
    assert after >= before > 0
