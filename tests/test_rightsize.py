"""`mlscope rightsize` end to end: real histories backfilled with promtool, served by the real Prometheus
(behind basic auth, as users run it), the real CLI in a subprocess, hand-computed expected numbers.

The fleet is tests/rightsize_histories.py:test_fleet(); prices are the catalogue's us-east-1 list prices.
Balanced profile: demand = p99.5 of the 5-minute maxima for CPU/GPU, the max for memory; headroom 20 %,
so target utilization = 1/1.2 = 0.8333; over-provisioned when demand x 1.2 < 0.5; 730 h a month.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import bcrypt
import jsonschema
import pytest

import rightsize_histories as rh
from helpers import Prometheus, free_port, require_binary, run_cli

pytestmark = pytest.mark.integration

AT = "2026-11-01T00:00:00Z"  # rh.END
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "exporters" / "rightsize" / "schema.json").read_text())
USER, PASSWORD = "rightsize", "s3cret-pw"


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    require_binary("promtool")
    tmp = tmp_path_factory.mktemp("rightsize")
    data = tmp / "prometheus-data"
    data.mkdir()
    rh.write_tsdb(data, tmp, rh.test_fleet())
    web = tmp / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    (tmp / "password").write_text(PASSWORD + "\n")
    server = Prometheus({"global": {"scrape_interval": "1m"}, "scrape_configs": []}, tmp,
                        extra_args=[f"--web.config.file={web}", "--storage.tsdb.retention.time=100d"])
    server.password_file = str(tmp / "password")
    server.tmp = tmp
    yield server
    server.stop()


def rightsize(prom, *args: str, auth: bool = True) -> subprocess.CompletedProcess:
    creds = ["--basic-auth-user", USER, "--basic-auth-password-file", prom.password_file] if auth else []
    return run_cli("rightsize", "--prometheus", prom.url, "--at", AT, *creds, *args, timeout=120)


def report(prom, *args: str) -> dict:
    result = rightsize(prom, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


@pytest.fixture(scope="module")
def two_weeks(prom) -> dict:
    return report(prom)


@pytest.fixture(scope="module")
def month(prom) -> dict:
    return report(prom, "--lookback", "32d", "--endpoint", "batch-monthly")


def find(doc: dict, name: str) -> dict:
    found = [r for r in doc["recommendations"] if name in (r.get("endpoint"), r.get("instance"))]
    assert len(found) == 1, [r.get("endpoint") or r.get("instance") for r in doc["recommendations"]]
    return found[0]


def test_report_header_and_schema(two_weeks):
    assert two_weeks["at"] == AT and two_weeks["lookback_seconds"] == 14 * 86400
    assert two_weeks["profile"] == "balanced"
    assert two_weeks["settings"]["target_utilization"] == pytest.approx(1 / 1.2, abs=1e-6)
    assert two_weeks["summary"]["subjects"] == 9
    # Only the endpoints the SageMaker exporter reports and the hosts with node/GPU series.
    assert {r.get("endpoint") or r.get("instance") for r in two_weeks["recommendations"]} == {
        "idle-gpu", "spiky", "steady", "llm-24gb", "batch-monthly", "new-endpoint", "legacy", "gpu-idle-host",
        "cpu-busy-host"}


def test_idle_gpu_endpoint_is_idle_and_saves_its_whole_cost(two_weeks):
    rec = find(two_weeks, "idle-gpu")
    assert rec["finding"] == "Idle" and rec["confidence"] == "high" and rec["history_hours"] == 336.0
    assert rec["current"] == {"instance_type": "ml.g5.xlarge", "instances": 1, "hourly_cost_dollars": 1.408}
    assert rec["utilization"]["gpu"] == {"p50": 0.01, "p95": 0.01, "p99": 0.01, "max": 0.01}
    # No invocations: deleting it saves 1.408 $/h x 730 h.
    assert rec["estimated_monthly_savings_dollars"] == 1027.84
    assert "delete the endpoint" in rec["message"]
    assert rec["cost_per_1k_requests_dollars"] is None and rec["autoscaling"]["target_value"] is None
    # If it must stay: its 30 % of 24 GB (7.2 GB, 8.64 GB with headroom) fits a 16 GB T4.
    best = rec["options"][0]
    assert (best["instance_type"], best["instances"], best["hourly_cost_dollars"]) == ("ml.g4dn.xlarge", 1, 0.736)
    assert best["estimated_monthly_savings_dollars"] == round((1.408 - 0.736) * 730, 2) == 490.56


def test_idle_gpu_host_moves_to_one_t4(two_weeks):
    rec = find(two_weeks, "gpu-idle-host")
    assert rec["kind"] == "host" and rec["finding"] == "Idle"
    assert rec["current"] == {"instance_type": "p3.8xlarge", "instances": 1, "hourly_cost_dollars": 12.24}
    assert rec["utilization"]["gpu"]["max"] == 0.03 and rec["utilization"]["cpu"]["max"] == pytest.approx(0.05)
    assert rec["utilization"]["memory"]["max"] == 0.1 and rec["utilization"]["gpu_memory"]["max"] == 0.125
    best = rec["options"][0]
    # Needs: 24.4 GiB memory (10 % of 244) x 1.2 = 29.3 -> 32 GiB; 8 GiB GPU memory in all; 1.6 vCPUs;
    # GPU 0.03 x 4 V100 (1.92 T4 each) = 0.23 T4.
    assert (best["instance_type"], best["instances"], best["hourly_cost_dollars"]) == ("g4dn.2xlarge", 1, 0.752)
    assert best["estimated_monthly_savings_dollars"] == round((12.24 - 0.752) * 730, 2) == 8386.24
    assert best["savings_percent"] == 93.9
    assert best["projected_utilization"] == {"cpu": 0.2, "memory": 0.7625, "gpu": 0.2304, "gpu_memory": 0.5}
    assert best["performance_risk"] == 3  # memory peak 76 % (risk 2) on an unmeasured GPU model (+1)
    assert rec["estimated_monthly_savings_dollars"] == 8386.24
    assert all(not o["instance_type"].startswith("ml.") for o in rec["options"])


def test_latency_spiking_static_endpoint_is_underprovisioned(two_weeks):
    rec = find(two_weeks, "spiky")
    assert rec["finding"] == "Underprovisioned"
    assert {"LatencyUnderprovisioned", "ThroughputUnderprovisioned"} <= set(rec["reasons"])
    auto = rec["autoscaling"]
    # Latency rises above 31.5 req/s per instance (the synthetic knee, on a bin edge: 14 x 45/20).
    assert auto["knee_reached"] is True and auto["sustainable_source"] == "knee"
    assert auto["sustainable_invocations_per_instance_per_second"] == pytest.approx(31.5, abs=0.01)
    assert auto["target_value"] == pytest.approx(31.5 * 0.5 * 60, abs=0.5)  # 945 per instance per minute
    # Peak 90 req/s: ceil(90 / (31.5 x 0.8333)) = ceil(3.43) = 4; trough 10 -> 1, but production keeps 2.
    assert (auto["min_capacity"], auto["max_capacity"]) == (2, 4)
    assert auto["peak_requests_per_second"] == pytest.approx(90, abs=0.05)
    # Little's law at the peak: 45 req/s x (0.05 + (45 - 31.5) x 0.05 = 0.725 s) = 32.6 in flight.
    assert auto["peak_in_flight_per_instance"] == pytest.approx(45 * 0.725, rel=0.01)
    same = [o for o in rec["options"] if o["instance_type"] == "ml.g5.xlarge"]
    assert same and same[0]["instances"] == 4 and same[0]["hourly_cost_dollars"] == 5.632
    assert same[0]["estimated_monthly_savings_dollars"] == round((2.816 - 5.632) * 730, 2)
    assert all(o["instances"] >= 2 for o in rec["options"])
    assert rec["estimated_monthly_savings_dollars"] == 0.0
    # 2.816 $/h over a mean 50 req/s (180,000 per hour).
    assert rec["cost_per_1k_requests_dollars"]["before"] == pytest.approx(2.816 / 180, rel=1e-3)


def test_well_sized_endpoint_is_optimized(two_weeks):
    rec = find(two_weeks, "steady")
    assert rec["finding"] == "Optimized" and rec["reasons"] == []
    assert rec["account"] == "123456789012"  # carried over from the series' account label
    assert rec["utilization"]["cpu"]["max"] == pytest.approx(0.70, abs=1e-3)
    best = rec["options"][0]
    assert (best["instance_type"], best["instances"], best["estimated_monthly_savings_dollars"]) == \
        ("ml.c5.xlarge", 2, 0.0)
    auto = rec["autoscaling"]
    # Flat latency: no knee. 20 req/s per instance at 70 % CPU -> 28.57 req/s at 100 %; x 0.5 x 60 = 857.1.
    assert auto["knee_reached"] is False and auto["sustainable_source"] == "utilization"
    assert "never reached" in auto["note"]
    assert auto["target_value"] == pytest.approx(20 / 0.7 * 30, abs=0.2)
    assert (auto["min_capacity"], auto["max_capacity"]) == (2, 2)


def test_gpu_memory_rules_out_16_gb_gpus(two_weeks):
    rec = find(two_weeks, "llm-24gb")
    assert rec["finding"] == "Overprovisioned" and "GPUOverprovisioned" in rec["reasons"]
    assert rec["utilization"]["gpu_memory"]["max"] == 0.75
    # 18 GB in use x 1.2 = 21.6 GB: no 16 GB T4 (g4dn); a 24 GB L4 (g6) is the cheapest that holds it.
    assert not [o for o in rec["options"] if o["instance_type"].startswith("ml.g4dn.")]
    best = rec["options"][0]
    assert (best["instance_type"], best["instances"], best["hourly_cost_dollars"]) == ("ml.g6.xlarge", 1, 1.0056)
    assert best["estimated_monthly_savings_dollars"] == round((1.408 - 1.0056) * 730, 2) == 293.75
    assert best["savings_percent"] == 28.6 and best["projected_utilization"]["gpu_memory"] == 0.75
    assert rec["estimated_monthly_savings_dollars"] == 293.75


def test_monthly_batch_spike_shows_only_with_32_days(two_weeks, month):
    short = find(two_weeks, "batch-monthly")
    assert short["finding"] == "Overprovisioned" and short["utilization"]["cpu"]["max"] == 0.1
    # 1.6 vCPUs (10 % of 2 x 8) and 9.6 GiB per instance (30 % of 32) -> 2 x r5.large (2 vCPU, 16 GiB).
    best = short["options"][0]
    assert (best["instance_type"], best["instances"], best["hourly_cost_dollars"]) == ("ml.r5.large", 2, 0.302)
    assert best["estimated_monthly_savings_dollars"] == round((0.922 - 0.302) * 730, 2) == 452.6
    long = find(month, "batch-monthly")
    assert long["history_hours"] == 32 * 24 and long["confidence"] == "high"
    # 6 h at 95 % is 72 of 9,216 windows (0.8 % > 0.5 %): p99.5 = 0.95, x 1.2 > 1.
    assert long["utilization"]["cpu"]["max"] == 0.95
    assert long["finding"] == "Underprovisioned" and "CPUUnderprovisioned" in long["reasons"]
    assert month["lookback_seconds"] == 32 * 86400 and len(month["recommendations"]) == 1


def test_too_little_history_is_insufficient_data(two_weeks):
    rec = find(two_weeks, "new-endpoint")
    assert rec["finding"] == "InsufficientData" and rec["confidence"] == "low"
    assert 19.9 <= rec["history_hours"] <= 20.2 and rec["options"] == []
    assert "30 h" in rec["message"]


def test_unknown_instance_type_gets_a_message(two_weeks):
    rec = find(two_weeks, "legacy")
    assert rec["options"] == [] and "ml.m4.xlarge is not in the instance catalogue" in rec["message"]
    assert rec["current"]["hourly_cost_dollars"] == 0.28  # read from the exporter's cost series


def test_busy_cpu_host_needs_eight_vcpus(two_weeks):
    rec = find(two_weeks, "cpu-busy-host")
    assert rec["finding"] == "Underprovisioned" and rec["reasons"] == ["CPUUnderprovisioned"]
    best = rec["options"][0]
    # 92 % of 4 vCPUs = 3.68 vCPUs; / 0.8333 -> 4.4 vCPUs -> an 8-vCPU type, 46 % busy.
    assert (best["instance_type"], best["hourly_cost_dollars"]) == ("c5.2xlarge", 0.34)
    assert best["projected_utilization"]["cpu"] == 0.46


def test_table_is_sorted_by_savings_with_a_total(prom):
    result = rightsize(prom)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["SUBJECT", "CURRENT", "FINDING"]
    assert lines[1].startswith("gpu-idle-host") and "8,386.24" in lines[1]
    assert "us-east-1/idle-gpu/AllTraffic" in lines[2] and "1,027.84" in lines[2]
    # 8386.24 + 1027.84 + 452.60 + 293.75
    assert "TOTAL estimated savings: $10,160.43/month over 9 subjects" in result.stdout


def test_csv_has_one_row_per_subject(prom, tmp_path):
    out = tmp_path / "r.csv"
    result = rightsize(prom, "--format", "csv", "--output", str(out))
    assert result.returncode == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 9
    llm = [r for r in rows if r["endpoint"] == "llm-24gb"][0]
    assert (llm["recommended_instance_type"], llm["estimated_monthly_savings_dollars"], llm["gpu_memory_max"]) == \
        ("ml.g6.xlarge", "293.75", "0.75")


def test_price_overrides_price_the_options(prom, tmp_path):
    config = tmp_path / "rightsize.yml"
    config.write_text("prices:\n  g4dn.2xlarge: 0.5\n")
    doc = report(prom, "--config", str(config), "--instance", "gpu-idle.*")  # anchored, as in PromQL
    assert [r["instance"] for r in doc["recommendations"]] == ["gpu-idle-host"]
    best = doc["recommendations"][0]["options"][0]
    assert (best["instance_type"], best["hourly_cost_dollars"], best["estimated_monthly_savings_dollars"]) == \
        ("g4dn.2xlarge", 0.5, round((12.24 - 0.5) * 730, 2))


def test_profiles_change_the_percentile(prom):
    cost = report(prom, "--profile", "cost", "--endpoint", "steady")
    assert cost["settings"]["cpu_percentile"] == 95.0 and cost["settings"]["headroom"] == 0.1
    perf = report(prom, "--profile", "performance", "--endpoint", "steady")
    assert perf["settings"]["cpu_percentile"] == 100.0
    # 70 % x 1.3 = 0.91 > 0.5: still not over-provisioned; target 1/1.3 = 0.769 < 0.70? no -> Optimized.
    assert find(perf, "steady")["finding"] == "Optimized"


def test_latency_objective_of_the_user(prom):
    # llm-24gb answers in 0.4 s, flat: no knee, so no latency finding by default; with a 0.3 s objective,
    # its p99 at peak (0.4 s) is above it.
    assert "LatencyUnderprovisioned" not in find(report(prom, "--endpoint", "llm-24gb"), "llm-24gb")["reasons"]
    rec = find(report(prom, "--endpoint", "llm-24gb", "--latency-objective", "300ms"), "llm-24gb")
    assert rec["finding"] == "Underprovisioned" and "LatencyUnderprovisioned" in rec["reasons"]


def test_html_report_renders_in_chromium(prom, tmp_path):
    chromium = require_binary("chromium")
    page = tmp_path / "report.html"
    result = rightsize(prom, "--format", "html", "--output", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Estimated savings: $10,160.43/month" in dom.stdout
    assert dom.stdout.count("<tr>") == 1 + 9 and dom.stdout.count("<svg") == 9  # a chart per subject
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1400,1200", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
    if os.environ.get("MLSCOPE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MLSCOPE_KEEP_SCREENSHOT"])


# ---- bad input: one line on stderr, exit status 2, never a traceback ----

def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_unreachable_prometheus(prom):
    result = run_cli("rightsize", "--prometheus", f"http://127.0.0.1:{free_port()}")
    one_line_error(result, "cannot reach the query API")


def test_unauthorised(prom, tmp_path):
    one_line_error(rightsize(prom, auth=False), "HTTP 401", "--basic-auth-user")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    one_line_error(rightsize(prom, "--basic-auth-user", USER, "--basic-auth-password-file", str(wrong), auth=False),
                   "HTTP 401")


def test_query_timeout(prom):
    one_line_error(rightsize(prom, "--query-timeout", "1ms"), "timed out")


def test_lookback_longer_than_retention(prom):
    one_line_error(rightsize(prom, "--lookback", "200d"), "longer than the store's retention (100d)")


def test_no_mlscope_series(prom):
    # As of 2020 the store holds nothing.
    one_line_error(rightsize(prom, "--at", "2020-01-01T00:00:00Z"), "no MLScope series")


@pytest.mark.parametrize("args, words", [
    (["--at", "yesterday"], ["--at", "RFC 3339"]),
    (["--at", "2026-11-01T00:00:00"], ["--at", "time zone"]),
    (["--lookback", "two weeks"], ["--lookback"]),
    (["--lookback", "5m"], ["--lookback", "too short"]),
    (["--profile", "cheap"], ["--profile"]),
    (["--format", "pdf"], ["--format"]),
    (["--endpoint", "("], ["--endpoint", "regular expression"]),
    (["--basic-auth-password-file", "/nonexistent/pw"], ["--basic-auth-password-file", "cannot read"]),
    (["--ca-file", "/nonexistent/ca.pem"], ["--ca-file"]),
    (["--catalogue", "/nonexistent/catalogue.csv"], ["--catalogue", "cannot read"]),
])
def test_bad_settings(prom, args, words):
    one_line_error(rightsize(prom, *args), *words)


def test_bad_price_override(prom, tmp_path):
    config = tmp_path / "rightsize.yml"
    config.write_text("prices:\n  g4dn.2xlarge: cheap\n")
    one_line_error(rightsize(prom, "--config", str(config)), "prices in", "g4dn.2xlarge", "dollars per hour")


def test_missing_or_bad_url():
    one_line_error(run_cli("rightsize"), "--prometheus")
    one_line_error(run_cli("rightsize", "--prometheus", "ftp://x"), "--prometheus", "http")


def test_one_query_per_metric_whatever_the_fleet(prom):
    from mlscope.rightsize import PromQL, analyse
    from mlscope.rightsize.cli import timestamp
    from mlscope.rightsize.query import Auth

    def queries(**filters) -> tuple[int, int]:
        client = PromQL(prom.url, auth=Auth(USER, PASSWORD))
        rep = analyse(client, timestamp(AT), 14 * 86400, **filters)
        return rep.queries, len(rep.recommendations)

    # Range queries come in 2-day chunks: 14 days = 7 per metric. Variants: 8 metrics + 2 instant queries;
    # hosts: 6 + 1. However many subjects there are.
    assert queries() == (8 * 7 + 2 + 6 * 7 + 1, 9)
    assert queries(endpoint="spiky") == (8 * 7 + 2, 1)
    assert queries(instance=".*host") == (6 * 7 + 1, 2)


def test_tls_query_api(tmp_path):
    """A Prometheus serving HTTPS (its own web config): the CA file verifies it, no CA fails the handshake in
    one line, --insecure-skip-verify gets through. Its store is empty, so a run that got through says so."""
    from test_runtime import _cert

    ca, ca_key, ca_crt, _ = _cert(tmp_path, "ca", ca=True)
    _, _, server_crt, server_key = _cert(tmp_path, "server", ca.subject, ca_key)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {server_crt}\n  key_file: {server_key}\n")
    server = Prometheus({"scrape_configs": []}, tmp_path, extra_args=[f"--web.config.file={web}"])
    try:
        url = f"https://127.0.0.1:{server.port}"
        one_line_error(run_cli("rightsize", "--prometheus", url, "--ca-file", str(ca_crt)), "no MLScope series")
        one_line_error(run_cli("rightsize", "--prometheus", url), "TLS failed", "--ca-file")
        one_line_error(run_cli("rightsize", "--prometheus", url, "--insecure-skip-verify"), "no MLScope series")
    finally:
        server.stop()
