"""`mlscope rightsize --serve` as a real process against a real Prometheus holding 15 days of backfilled
exporter history (tests/rightsize_histories.py), scraped back by that Prometheus with the shipped
`rightsizer` job and rule file.

- every served number equals the one-shot JSON report's number for the same moment (`--at`);
- the shipped scrape job keeps a host's `instance`, gives endpoint variants none;
- the savings total and the RightsizingSavingsAvailable alert see the served numbers (hand-computed:
  the idle ml.g5.xlarge endpoint saves its whole cost, $1.408/h x 730 h = $1027.84/month);
- Prometheus unreachable: the error metric counts, the collector is down, the last report stays served;
- promtool check metrics is clean; bad settings exit 2 with one line.
"""

from __future__ import annotations

import json
import math
import sys
import re
import time

import pytest
import requests
import yaml

from helpers import (ROOT, Prometheus, free_port, promtool_check_metrics, require_binary, run_cli, samples,
                     scrape, start_exporter)
from rightsize_histories import test_fleet as rightsize_fleet, write_tsdb

sys.path.insert(0, str(ROOT))

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SUBJECT = ("kind", "account", "region", "endpoint", "variant", "instance")
# The fleet of tests/rightsize_histories.py without the 33-day batch endpoint (15 days are enough here).
LEFT_OUT = {"batch-monthly"}


def key(labels: dict) -> tuple:
    return tuple(labels.get(k, "") for k in SUBJECT)


def rightsizer_job(port: int) -> dict:
    """The shipped scrape job for the rightsizer, pointed at the test's port, scraped every second."""
    shipped = yaml.safe_load((ROOT / "provisioning/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == "rightsizer"]
    return {**job, "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_binary("promtool")
    tmp = tmp_path_factory.mktemp("serve")
    end = math.floor(time.time() / 60) * 60
    fleet = [s for s in rightsize_fleet(end) if s.labels.get("endpoint") not in LEFT_OUT]
    tsdb = tmp / "prometheus-data"
    tsdb.mkdir()
    write_tsdb(tsdb, tmp, fleet, end=end)
    port = free_port()
    prom = Prometheus({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                       "scrape_configs": [rightsizer_job(port)]}, tmp,
                      rule_files=[ROOT / "alerts" / "config.rules.yml", ROOT / "alerts" / "rightsizing.rules.yml"],
                      extra_args=["--storage.tsdb.retention.time=60d"])
    server, base = start_exporter("rightsize", "--serve", "--prometheus", prom.url, "--interval", "1s", port=port,
                                  timeout=60)
    try:
        yield prom, server, base
    finally:
        server.stop()
        prom.stop()


def served(base: str, timeout: float = 60) -> dict:
    """A scrape that holds a report (the first run takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        parsed = samples(scrape(base))
        if parsed.get("mlscope_rightsizing_finding") or time.monotonic() > deadline:
            assert parsed.get("mlscope_rightsizing_finding"), parsed
            return parsed
        time.sleep(0.2)


def by_subject(parsed: dict, name: str) -> dict[tuple, tuple[dict, float]]:
    out = {}
    for labels, v in parsed.get(name, []):
        assert key(labels) not in out, f"two {name} series for {key(labels)}"
        out[key(labels)] = (labels, v)
    return out


def test_served_numbers_equal_the_json_report(stack):
    prom, _, base = stack
    parsed = served(base)
    at = parsed["mlscope_rightsizing_last_run_timestamp_seconds"][0][1]
    result = run_cli("rightsize", "--prometheus", prom.url, "--at", repr(at), "--format", "json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    recs = {key(r): r for r in report["recommendations"]}
    assert len(recs) == 8   # 6 endpoints and 2 hosts
    findings = by_subject(parsed, "mlscope_rightsizing_finding")
    savings = by_subject(parsed, "mlscope_rightsizing_estimated_monthly_savings_dollars")
    recommended = by_subject(parsed, "mlscope_rightsizing_recommended_instances")
    risk = by_subject(parsed, "mlscope_rightsizing_performance_risk")
    cost = by_subject(parsed, "mlscope_rightsizing_current_hourly_cost_dollars")
    assert set(findings) == set(savings) == set(recs)
    for subject, rec in recs.items():
        labels, one = findings[subject]
        assert (labels["finding"], one) == (rec["finding"], 1), subject
        best = rec["options"][0] if rec["options"] else None
        labels, saved = savings[subject]
        expected = best["estimated_monthly_savings_dollars"] if rec["finding"] == "Underprovisioned" and best \
            else rec["estimated_monthly_savings_dollars"]
        assert saved == pytest.approx(expected, abs=1e-9), subject
        assert labels["instance_type"] == (best["instance_type"] if best else rec["current"]["instance_type"])
        if best:
            assert recommended[subject][1] == best["instances"] and risk[subject][1] == best["performance_risk"]
        else:
            assert subject not in recommended and subject not in risk
        labels, hourly = cost[subject]
        assert (labels["instance_type"], hourly) == (rec["current"]["instance_type"],
                                                     rec["current"]["hourly_cost_dollars"])
        for resource, stats in rec["utilization"].items():
            for statistic, ratio in stats.items():
                got = [v for lbls, v in parsed["mlscope_rightsizing_utilization_ratio"]
                       if key(lbls) == subject and lbls["resource"] == resource and lbls["statistic"] == statistic]
                assert got == [ratio], (subject, resource, statistic)
    # hand-computed: the idle A10G endpoint saves its whole cost, $1.408/h x 730 h
    idle = ("sagemaker_variant", "", "us-east-1", "idle-gpu", "AllTraffic", "")
    assert findings[idle][0]["finding"] == "Idle"
    assert savings[idle][1] == pytest.approx(1027.84)
    # the catalogue lacks ml.m4.xlarge: no option, saves 0, labelled with the type it runs
    legacy = ("sagemaker_variant", "", "us-east-1", "legacy", "AllTraffic", "")
    assert savings[legacy] == ({**dict(zip(SUBJECT, legacy)), "instance_type": "ml.m4.xlarge"}, 0.0)
    # a 4-vCPU m6i.xlarge ($0.192/h) at 92 % needs more than 4 vCPUs: any option costs more, savings < 0
    busy = ("host", "", "us-east-1", "", "", "cpu-busy-host")
    assert findings[busy][0]["finding"] == "Underprovisioned" and savings[busy][1] < 0
    assert parsed["mlscope_rightsizing_target_utilization_ratio"][0][1] == pytest.approx(1 / 1.2)
    assert parsed["mlscope_rightsizing_lookback_seconds"][0][1] == 14 * 86400
    assert parsed["mlscope_rightsizing_last_run_queries"][0][1] == report_queries(prom, at)
    up = {lbls["collector"]: v for lbls, v in parsed["mlscope_collector_up"]}
    assert up == {"rightsizer": 1}


def report_queries(prom, at: float) -> float:
    """How many queries the one-shot analysis sends (the CLI logs nothing of it; read it from the API)."""
    from mlscope.rightsize.cli import SETTINGS, run_once
    from mlscope.settings import resolve

    cfg = resolve(SETTINGS, {"prometheus": prom.url}, environ={})
    return run_once(cfg, at=at).queries


def test_exposition_passes_promtool(stack):
    _, _, base = stack
    served(base)
    text = requests.get(base + "/metrics", timeout=10).text
    result = promtool_check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_it_with_the_shipped_job_and_rules(stack):
    prom, _, base = stack
    served(base)
    # endpoint variants carry no `instance`; hosts keep theirs; self-metrics get the target's
    idle = prom.wait_for('mlscope_rightsizing_finding{endpoint="idle-gpu"}')
    assert "instance" not in idle[0]["metric"] and idle[0]["metric"]["job"] == "rightsizer"
    host = prom.wait_for('mlscope_rightsizing_finding{kind="host", instance="gpu-idle-host"}')
    assert host[0]["metric"]["finding"] == "Idle"
    assert prom.wait_for('mlscope_collector_up{job="rightsizer"}')[0]["metric"]["instance"] == "127.0.0.1"
    # the total is the sum of the positive served savings
    parsed = samples(scrape(base))
    positive = sum(max(0.0, v) for _, v in parsed["mlscope_rightsizing_estimated_monthly_savings_dollars"])
    total = prom.wait_for("fleet:mlscope_rightsizing_estimated_monthly_savings_dollars:sum")
    assert float(total[0]["value"][1]) == pytest.approx(positive, rel=1e-6)
    # the ticket alert is pending (for: 1h) on the idle endpoint with its hand-computed savings
    pending = prom.wait_for('ALERTS{alertname="RightsizingSavingsAvailable", endpoint="idle-gpu"}')
    assert pending[0]["metric"]["alertstate"] == "pending" and pending[0]["metric"]["severity"] == "ticket"
    expr = prom.query('mlscope_rightsizing_estimated_monthly_savings_dollars{endpoint="idle-gpu"}')
    assert float(expr[0]["value"][1]) == pytest.approx(1027.84)


def test_every_rightsizing_panel_has_data(stack):
    """The Rightsizing dashboard and the cost dashboard's provisioning table, on the served series."""
    from dashboards.queries import all_queries

    prom, _, base = stack
    served(base)
    prom.wait_for("fleet:mlscope_rightsizing_estimated_monthly_savings_dollars:sum")
    every = {v: ".*" for v in ("region", "endpoint", "variant", "instance", "gpu", "model")}
    wanted = [(uid, title, expr) for uid, title, expr in all_queries(every)
              if uid == "mlscope-rightsizing" or "mlscope_rightsizing" in expr]
    assert len(wanted) > 15
    empty = []
    for uid, title, expr in wanted:
        deadline = time.monotonic() + 10
        while not prom.query(expr):
            if time.monotonic() > deadline:
                empty.append((uid, title, expr))
                break
            time.sleep(0.5)
    assert not empty, empty


def test_prometheus_unreachable_keeps_the_last_report(stack):
    prom, server, base = stack
    before = served(base)
    prom.stop()
    try:
        deadline = time.monotonic() + 30
        while True:
            parsed = samples(scrape(base))
            if parsed["mlscope_rightsizing_errors_total"][0][1] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert parsed["mlscope_rightsizing_errors_total"][0][1] >= 1
        assert {lbls["collector"]: v for lbls, v in parsed["mlscope_collector_up"]} == {"rightsizer": 0}
        # the last good report is still served, whole
        assert by_subject(parsed, "mlscope_rightsizing_finding").keys() == \
            by_subject(before, "mlscope_rightsizing_finding").keys()
        assert parsed["mlscope_rightsizing_last_run_timestamp_seconds"][0][1] >= \
            before["mlscope_rightsizing_last_run_timestamp_seconds"][0][1]
        log = server.output()
        # stopped: refused; while it shuts down, Prometheus may still answer 503
        assert re.search(r"rightsizing run failed: (cannot reach the query API|.* answered HTTP 503 to /api/v1/query)",
                         log), log[-2000:]
        assert "serving the report of" in log
        assert "Traceback" not in log
    finally:
        prom.start()


def test_bad_settings_exit_2_with_one_line():
    for args, needle in ((["--serve"], "--prometheus"),
                         (["--serve", "--prometheus", "ftp://x"], "--prometheus"),
                         (["--serve", "--prometheus", "http://127.0.0.1:9", "--interval", "0"], "--interval"),
                         (["--serve", "--prometheus", "http://127.0.0.1:9", "--at", "5"], "--at"),
                         (["--serve", "--prometheus", "http://127.0.0.1:9", "--listen", "nonsense"], "--listen")):
        result = run_cli("rightsize", *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mlscope rightsize") and needle in lines[0], (args, lines)


def test_basic_auth_through_the_shared_runtime(tmp_path):
    """--web-config is the exporters' own: without the password, no metrics; with it, the self-metrics."""
    import bcrypt

    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b's3cret', bcrypt.gensalt(rounds=4)).decode()}'\n")
    server, base = start_exporter("rightsize", "--serve", "--prometheus", "http://127.0.0.1:9", "--web-config",
                                  str(web), auth=("prometheus", "s3cret"))
    try:
        assert requests.get(base + "/metrics", timeout=5).status_code == 401
        text = requests.get(base + "/metrics", auth=("prometheus", "s3cret"), timeout=5).text
        assert 'mlscope_collector_up{collector="rightsizer"}' in text and "mlscope_rightsizing_errors_total" in text
    finally:
        server.stop()
