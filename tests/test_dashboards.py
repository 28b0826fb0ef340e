"""Dashboards: generated JSON is committed and current, every panel is complete, every query parses
and names only metrics that MLScope's contracts or recording rules define."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

from helpers import ROOT, Prometheus

sys.path.insert(0, str(ROOT))

import dashboards  # noqa: E402
from dashboards import queries  # noqa: E402
from dashboards.panels import DATASOURCE_UID  # noqa: E402

EXPECTED_UIDS = ["mlscope-wall", "mlscope-endpoints", "mlscope-gpus", "mlscope-hosts", "mlscope-models",
                 "mlscope-cost", "mlscope-rightsizing", "mlscope-stack"]
DASHBOARD_VARIABLES = {
    "mlscope-wall": set(),
    "mlscope-endpoints": {"region", "endpoint", "variant"},
    "mlscope-gpus": {"instance", "gpu"},
    "mlscope-hosts": {"instance"},
    "mlscope-models": {"model"},
    "mlscope-cost": set(),
    "mlscope-rightsizing": set(),
    "mlscope-stack": set(),
}
EXAMPLE_VARIABLES = {"region": "us-east-1", "endpoint": "demo-llm", "variant": "AllTraffic", "instance": ".*",
                     "gpu": "0", "model": "demo-llama"}
# Grafana unit ids the dashboards may use (grafana-data/src/valueFormats/categories.ts); guards typos.
GRAFANA_UNITS = {"percentunit", "percent", "s", "ms", "bytes", "Bps", "watt", "celsius", "hertz", "currencyUSD",
                 "reqps", "none", "short", "cps", "iops", "bool_on_off", "kwatth", "suffix: PAGES"}
PROVIDER_PATH = "/var/lib/grafana/dashboards/mlscope"

# ---- metric names from the public contracts (ARCHITECTURE.md, "Public contracts")
CONTRACT_METRICS = {
    # self-metrics
    "mlscope_build_info", "mlscope_collector_up", "mlscope_collector_duration_seconds",
    "mlscope_collector_errors_total", "mlscope_collector_last_success_timestamp_seconds",
    # host exporter (node_exporter names)
    "node_cpu_seconds_total", "node_load1", "node_load5", "node_load15",
    *(f"node_memory_{f}_bytes" for f in ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached",
                                         "SwapTotal", "SwapFree")),
    "node_filesystem_size_bytes", "node_filesystem_avail_bytes", "node_filesystem_free_bytes",
    "node_filesystem_readonly", "node_disk_read_bytes_total", "node_disk_written_bytes_total",
    "node_disk_reads_completed_total", "node_disk_writes_completed_total", "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total", "node_network_transmit_bytes_total", "node_network_receive_errs_total",
    "node_network_transmit_errs_total", "node_boot_time_seconds", "node_time_seconds", "node_uname_info",
    "mlscope_host_hourly_cost_dollars",
    # node_exporter names for disk latency and inodes (the host exporter serves them too)
    "node_disk_read_time_seconds_total", "node_disk_write_time_seconds_total", "node_filesystem_files",
    "node_filesystem_files_free",
    # rightsizing (`mlscope rightsize --serve`)
    "mlscope_rightsizing_estimated_monthly_savings_dollars",
    # GPU exporter
    "gpu_info", "gpu_up", "gpu_utilization_ratio", "gpu_memory_copy_utilization_ratio", "gpu_memory_used_bytes",
    "gpu_memory_total_bytes", "gpu_memory_reserved_bytes", "gpu_temperature_celsius", "gpu_power_usage_watts",
    "gpu_power_limit_watts", "gpu_energy_consumed_joules_total", "gpu_sm_clock_hertz", "gpu_memory_clock_hertz",
    "gpu_sm_clock_max_hertz", "gpu_clock_throttle_active", "gpu_ecc_errors_total", "gpu_remapped_rows",
    "gpu_pcie_replay_errors_total", "gpu_xid_errors_total", "gpu_pcie_transmit_bytes_per_second",
    "gpu_pcie_receive_bytes_per_second", "gpu_sm_active_ratio", "gpu_sm_occupancy_ratio",
    "gpu_tensor_active_ratio", "gpu_dram_active_ratio", "gpu_process_memory_used_bytes",
    # SageMaker exporter
    "sagemaker_endpoint_info", "sagemaker_variant_info", "sagemaker_variant_instances",
    "sagemaker_variant_desired_instances", "sagemaker_invocations_total", "sagemaker_invocation_4xx_errors_total",
    "sagemaker_invocation_5xx_errors_total", "sagemaker_invocation_model_errors_total",
    *(f"sagemaker_{kind}_latency_seconds{suffix}" for kind in ("model", "overhead") for suffix in ("", "_sum", "_count")),
    *(f"sagemaker_instance_{r}_utilization_ratio" for r in ("cpu", "memory", "disk", "gpu", "gpu_memory")),
    "sagemaker_variant_hourly_cost_dollars", "sagemaker_data_timestamp_seconds",
    "mlscope_cloudwatch_requests_total", "mlscope_cloudwatch_metrics_requested_total",
    "mlscope_cloudwatch_errors_total",
    # Alertmanager's alerts by severity and state (`mlscope alertmanager-exporter`)
    "mlscope_alertmanager_alerts", "mlscope_alertmanager_up",
    # rightsizer (`mlscope rightsize --serve`, docs/rightsizing.md)
    *(f"mlscope_rightsizing_{name}" for name in (
        "finding", "estimated_monthly_savings_dollars", "estimated_savings_ratio", "recommended_instances",
        "recommended_hourly_cost_dollars", "performance_risk", "projected_utilization_ratio",
        "current_hourly_cost_dollars", "current_instances", "utilization_ratio", "target_utilization_ratio",
        "history_seconds", "last_run_timestamp_seconds", "errors_total")),
}
# Series Prometheus and Alertmanager make themselves.
BUILTIN_METRICS = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
                   "scrape_samples_post_metric_relabeling", "scrape_series_added"}
BUILTIN_PREFIXES = ("prometheus_", "alertmanager_")
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "inf", "nan", "Inf", "NaN", "atan2"}


def recording_rule_names() -> set[str]:
    """Names from docs/recording-rules.md tables, expanding '(also `_rate1h`, `:1d`)' suffix variants."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "recording-rules.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        cell = line.split("|")[1]
        bases = re.findall(r"`([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)`", cell)
        names.update(bases)
        also = re.search(r"\(also ([^)]*)\)", cell)
        if also and bases:
            for suffix in re.findall(r"`([_:][a-z0-9_]+)`", also.group(1)):
                sep = suffix[0]
                names.add(bases[0][:bases[0].rindex(sep)] + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (tokeniser good enough for the dashboards' PromQL)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)                               # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                              # range/subquery selectors
    s = re.sub(r"\boffset\s+-?\w+", " ", s)                        # offset 1h
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w:])", " ", s)   # numbers
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        token = match.group(0)
        if token in PROMQL_KEYWORDS or s[match.end():].lstrip().startswith("("):
            continue   # keyword or function call
        names.add(token)
    return names


@pytest.fixture(scope="module")
def models() -> dict[str, dict]:
    return {uid: dashboards.load(uid) for uid in dashboards.UIDS}


def panels_of(model: dict) -> list[dict]:
    out = []
    for panel in model["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [p for p in out if p["type"] != "row"]


# ------------------------------------------------------------------ generation


def test_all_seven_dashboards():
    assert sorted(dashboards.UIDS) == sorted(EXPECTED_UIDS)


def test_regenerating_changes_nothing():
    for uid in dashboards.UIDS:
        path = dashboards.json_path(uid)
        assert path.is_file(), f"{path} missing: run `python -m dashboards`"
        assert path.read_text() == dashboards.render(uid), f"{path} is stale: run `python -m dashboards`"
        assert dashboards.render(uid) == dashboards.render(uid), f"{uid}: output is not deterministic"
    extra = {p.name for p in dashboards.JSON_DIR.glob("*.json")} - {f"{uid}.json" for uid in dashboards.UIDS}
    assert not extra, f"JSON no dashboard generates: {extra}"


def test_check_flag(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "dashboards", *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=60)
    assert run("--check").returncode == 0
    out = tmp_path / "json"
    shutil.copytree(dashboards.JSON_DIR, out)
    assert run("--check", "--out", str(out)).returncode == 0
    wall = out / "mlscope-wall.json"
    wall.write_text(wall.read_text().replace('"30s"', '"1m"'))
    result = run("--check", "--out", str(out))
    assert result.returncode == 1 and "mlscope-wall.json" in result.stderr
    assert run("--out", str(out)).returncode == 0          # regenerating repairs it
    assert run("--check", "--out", str(out)).returncode == 0
    (out / "mlscope-retired.json").write_text("{}")        # a dashboard that was removed from the code
    result = run("--check", "--out", str(out))
    assert result.returncode == 1 and "mlscope-retired.json: nothing generates this file" in result.stderr
    result = run("--out", str(out))
    assert result.returncode == 0 and f"deleted {out / 'mlscope-retired.json'}" in result.stdout
    assert not (out / "mlscope-retired.json").exists() and (out / "mlscope-wall.json").is_file()


# ------------------------------------------------------------------ dashboards


@pytest.mark.parametrize("uid", EXPECTED_UIDS)
def test_dashboard_metadata(models, uid):
    d = models[uid]
    assert d["uid"] == uid
    assert d["title"].startswith("MLScope / ")
    assert "mlscope" in d["tags"]
    assert d["refresh"] and d["time"]["from"].startswith("now-")
    assert d["schemaVersion"] == 41           # Grafana 11.6
    assert "id" not in d or d["id"] is None   # provisioning assigns ids
    assert any(link["type"] == "dashboards" and "mlscope" in link["tags"] for link in d["links"]), \
        "no link to the other MLScope dashboards"
    firing = [a for a in d["annotations"]["list"] if a.get("expr", "").startswith('ALERTS{alertstate="firing"')]
    assert len(firing) == 1 and firing[0]["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    assert 'alertname!="Watchdog"' in firing[0]["expr"], "the always-firing Watchdog would band every graph"
    assert firing[0]["enable"] is True
    assert {v["name"] for v in d["templating"]["list"]} == DASHBOARD_VARIABLES[uid]


@pytest.mark.parametrize("uid", EXPECTED_UIDS)
def test_sdk_model_reads_the_json(uid):
    """The committed JSON loads back into the SDK's typed dashboard model."""
    model = sdk_dashboard.Dashboard.from_json(json.loads(dashboards.json_path(uid).read_text()))
    assert model.uid == uid and len(model.panels) == len(dashboards.load(uid)["panels"])


def test_titles_unique(models):
    titles = [d["title"] for d in models.values()]
    assert len(set(titles)) == len(titles)
    for uid, d in models.items():
        panel_titles = [p["title"] for p in panels_of(d)]
        dupes = {t for t in panel_titles if panel_titles.count(t) > 1}
        assert not dupes, f"{uid}: panel titles must be unique (tests and all_queries key on them): {dupes}"


def test_wall_is_a_tv_dashboard(models):
    wall = models["mlscope-wall"]
    assert wall["templating"]["list"] == []
    assert wall["refresh"] == "30s"
    panels = wall["panels"]
    assert all(p["type"] != "row" for p in panels), "rows waste TV space"
    # 1920x1080 in kiosk mode at 125 % zoom leaves 864 CSS pixels: 20 rows of 30 px + margins, with room
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    assert bottom <= 20, f"wall is {bottom} grid rows tall"
    for p in panels:
        assert p["gridPos"]["w"] >= 4 and p["gridPos"]["h"] >= 4, f"{p['title']!r} is too small to read: {p['gridPos']}"
        if p["type"] == "stat":
            # each target is a single aggregate (tests/test_dashboard_promql.py checks they return one series)
            assert len(p["targets"]) <= 6, f"{p['title']!r} lists more than 6 values"
    # reading order: the banner first, the health grid, then at most 6 golden numbers
    ordered = sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert ordered[0]["title"] == "Paging"
    grid = next(p for p in panels if p["title"] == "Endpoint health")
    golden = [p for p in panels if p["gridPos"]["y"] > grid["gridPos"]["y"]]
    assert grid["type"] == "table" and grid["gridPos"]["y"] >= ordered[0]["gridPos"]["y"] + ordered[0]["gridPos"]["h"]
    assert [p["title"] for p in golden] == ["Availability 30d", "Requests/s", "Latency ÷ objective",
                                            "Error budget left", "Spend $/hour", "Rightsizing savings"]
    assert any(p["title"] == "Data age" for p in panels), "no data-freshness clock"
    # the self-hosted models' grid sits beside the endpoints', as tall, above the golden numbers
    models_grid = next(p for p in panels if p["title"] == "Model health")
    assert models_grid["type"] == "table"
    assert models_grid["gridPos"]["y"] == grid["gridPos"]["y"] and models_grid["gridPos"]["h"] == grid["gridPos"]["h"]


def test_wall_banner_counts_pages_only(models):
    banner = next(p for p in models["mlscope-wall"]["panels"] if p["title"] == "Paging")
    (target,) = banner["targets"]
    # Alertmanager's own count (mlscope alertmanager-exporter): silences and inhibitions applied
    assert 'mlscope_alertmanager_alerts{severity="page",state="notifying"}' in target["expr"]
    texts = {m["options"]["result"].get("text") for m in banner["fieldConfig"]["defaults"]["mappings"]}
    assert {"NOTHING PAGING", "PAGES UNKNOWN"} <= texts
    assert banner["options"]["colorMode"] == "background"
    assert any("alerting/groups" in link["url"] and "severity%3Dpage" in link["url"] for link in banner["links"]), \
        "the banner links to Alertmanager's own view (silences and inhibitions applied)"


def test_health_grid_links_to_the_endpoint(models):
    grid = next(p for p in models["mlscope-wall"]["panels"] if p["title"] == "Endpoint health")
    links = [prop["value"] for o in grid["fieldConfig"]["overrides"] if o["matcher"]["options"] == "endpoint"
             for prop in o["properties"] if prop["id"] == "links"]
    assert links and "var-endpoint=${__data.fields.endpoint}" in links[0][0]["url"]
    assert "/d/mlscope-endpoints" in links[0][0]["url"]


def test_model_grid_links_to_the_model_and_names_every_state(models):
    grid = next(p for p in models["mlscope-wall"]["panels"] if p["title"] == "Model health")
    props = {prop["id"]: prop["value"] for o in grid["fieldConfig"]["overrides"]
             for prop in o["properties"] if o["matcher"]["options"] in ("model", "health")}
    assert "/d/mlscope-models?var-model=${__data.fields.model}" in props["links"][0]["url"]
    # idle reads IDLE in blue (not red, not "no data"), a dead server DOWN in red; the rest as the endpoints'
    states = {value: (r["text"], r["color"]) for value, r in props["mappings"][0]["options"].items()}
    assert states == {"-1": ("IDLE", "blue"), "0": ("OK", "green"), "1": ("AT RISK", "orange"),
                      "2": ("FAILING", "red"), "3": ("DOWN", "red")}


def test_worst_endpoints_table_links_carry_var_endpoint(models):
    table = next(p for p in panels_of(models["mlscope-endpoints"]) if p["title"].startswith("Worst "))
    urls = [link["url"] for o in table["fieldConfig"]["overrides"] for prop in o["properties"]
            if prop["id"] == "links" for link in prop["value"]]
    assert urls and all("var-endpoint=${__data.fields.endpoint}" in u for u in urls)
    columns = set(table["transformations"][-1]["options"]["renameByName"].values())
    assert {"p99 ÷ objective", "5xx 1h", "$ per 1k requests", "budget left"} <= columns


@pytest.mark.parametrize("uid,matchers", [("mlscope-endpoints", ['region=~"$region"', 'endpoint=~"$endpoint"']),
                                          ("mlscope-gpus", ['instance=~"$instance"', 'gpu=~"$gpu"']),
                                          ("mlscope-hosts", ['instance=~"$instance"'])])
def test_annotations_follow_the_dashboard_variables(models, uid, matchers):
    (firing,) = [a for a in models[uid]["annotations"]["list"] if a.get("expr", "").startswith("ALERTS{")]
    for matcher in matchers:
        assert matcher in firing["expr"]


def test_no_stacked_percentage_is_clipped(models):
    for uid, d in models.items():
        for p in panels_of(d):
            stacking = p["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode")
            if p["type"] == "timeseries" and stacking == "normal":
                assert p["fieldConfig"]["defaults"].get("max") is None, \
                    f"{uid} / {p['title']!r}: a stack with a hard max hides what is above it"


def test_spend_and_traffic_are_not_green(models):
    for uid, d in models.items():
        for p in panels_of(d):
            if p["type"] != "stat" or p["fieldConfig"]["defaults"]["unit"] not in ("currencyUSD", "reqps"):
                continue
            steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            if len(steps) == 1:      # no objective to compare against
                assert steps[0]["color"] != "green", f"{uid} / {p['title']!r} looks healthy whatever it shows"


def test_throttle_timeline_draws_only_harmful_reasons_red(models):
    panel = next(p for p in panels_of(models["mlscope-gpus"]) if p["title"] == "Clock throttle reasons")
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert mapping["options"]["1"]["color"] != "red" and mapping["options"]["2"]["color"] == "red"
    assert "gpu_throttle_reason_harmful" in panel["targets"][0]["expr"]


def test_p95_is_shown_where_latency_kpis_are(models):
    for uid in ("mlscope-wall", "mlscope-endpoints"):
        exprs = [t["expr"] for p in panels_of(models[uid]) for t in p["targets"]]
        assert any("p95" in e or 'quantile="0.95"' in e for e in exprs), f"{uid} shows no p95"
    titles = [p["title"] for p in panels_of(models["mlscope-endpoints"])]
    assert "Model latency p50 / p95 / p99" in titles


def test_endpoints_dashboard_has_the_slo_panels(models):
    panels = {p["title"]: p for p in panels_of(models["mlscope-endpoints"])}
    assert panels["Status"]["type"] == "state-timeline"
    assert panels["Error budget left, 30-day burndown"]["timeFrom"] == "30d"
    burn = [t["expr"] for t in panels["Burn rate now"]["targets"]]
    assert [e.split("{")[0].rsplit(":", 1)[1] for e in burn] == ["1h", "6h", "3d"]
    assert panels["Budget exhausted in"]["fieldConfig"]["defaults"]["unit"] == "s"
    for needed in ("Throughput per instance", "Latency against load", "Latency SLO burn rate"):
        assert needed in panels


@pytest.mark.parametrize("uid", EXPECTED_UIDS)
def test_every_panel_is_complete(models, uid):
    panels = panels_of(models[uid])
    assert panels
    for p in panels:
        where = f"{uid} / {p.get('title')!r}"
        assert p.get("title"), where
        defaults = p["fieldConfig"]["defaults"]
        assert defaults.get("unit") in GRAFANA_UNITS, f"{where}: unit {defaults.get('unit')!r}"
        for override in p["fieldConfig"].get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in GRAFANA_UNITS, f"{where}: override unit {prop['value']!r}"
        steps = defaults.get("thresholds", {}).get("steps")
        assert steps and steps[0]["value"] is None, f"{where}: thresholds need a base step"
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{where}: thresholds out of order"
        assert p["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        targets = p.get("targets") or []
        assert targets, f"{where}: no target"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), f"{where}: refIds {ref_ids}"
        for t in targets:
            assert t.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, f"{where}: target datasource"
            assert t.get("expr", "").strip(), f"{where}: empty expr"


@pytest.mark.parametrize("uid", EXPECTED_UIDS)
def test_layout(models, uid):
    panels = models[uid]["panels"]
    ids = [p["id"] for p in panels] + [c["id"] for p in panels for c in p.get("panels", [])]
    assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{uid} / {p.get('title')}: {g}"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{uid}: {p.get('title')!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p.get("title", "")
        if p["type"] == "row":
            assert p["collapsed"] is False and p["panels"] == [], "expanded rows keep their panels at top level"


@pytest.mark.parametrize("uid", EXPECTED_UIDS)
def test_variables_are_defined(models, uid):
    d = models[uid]
    defined = {v["name"] for v in d["templating"]["list"]} | set(queries.BUILTIN_VARIABLES)
    for v in d["templating"]["list"]:
        assert v["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        assert v["query"].startswith("label_values(")
    for title, target in queries.panel_targets(uid):
        used = {a or b for a, b in re.findall(r"\$(?:\{(\w+)[^}]*\}|(\w+))", target["expr"])}
        assert used <= defined, f"{uid} / {title!r}: undefined variables {used - defined}"


def test_all_queries_substitutes_everything():
    found = queries.all_queries(EXAMPLE_VARIABLES)
    assert len(found) > 100
    assert {uid for uid, _, _ in found} == set(EXPECTED_UIDS)
    for uid, title, expr in found:
        assert "$" not in expr, f"{uid} / {title!r}: {expr}"
    endpoint_exprs = [e for uid, _, e in found if uid == "mlscope-endpoints"]
    assert any('endpoint=~"demo-llm"' in e for e in endpoint_exprs)
    assert any("[1m]" in e for _, _, e in found)          # $__rate_interval
    assert any("[1h]" in e for _, _, e in found)          # $__range
    with pytest.raises(KeyError):
        queries.all_queries({})                            # $endpoint has no value
    titles = {(uid, title) for uid, title, _ in found}
    assert queries.MAY_BE_EMPTY <= titles, queries.MAY_BE_EMPTY - titles


# ------------------------------------------------------------------ metric names


def test_recording_rule_doc_parses():
    names = recording_rule_names()
    for name in ("endpoint:sagemaker_requests:rate5m", "endpoint:sagemaker_5xx_errors:ratio_rate30d",
                 "endpoint:sagemaker_cost_per_1k_requests_dollars:1d", "fleet:sagemaker_availability:ratio_rate30d",
                 "instance:node_network_receive_bytes:rate5m"):
        assert name in names


def test_metric_name_tokeniser():
    assert metric_names('sum by (instance, mode) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) '
                        '/ on (instance) group_left count by (instance) (node_load1)') == \
        {"node_cpu_seconds_total", "node_load1"}
    assert metric_names('label_replace(a:b:c < 0.2, "v", "x", "", "") or on (e) up * 1e-05') == {"a:b:c", "up"}
    assert metric_names("last_over_time(x[1d] offset 1h) - x offset 30m") == {"x"}


def test_every_metric_is_a_contract_or_recording_rule():
    rules = recording_rule_names()
    allowed = CONTRACT_METRICS | rules | BUILTIN_METRICS
    exprs = [(uid, title, expr) for uid, title, expr in queries.all_queries(EXAMPLE_VARIABLES)]
    exprs += queries.annotation_queries() + queries.variable_queries(EXAMPLE_VARIABLES)
    unknown = {}
    for uid, title, expr in exprs:
        for name in metric_names(expr):
            if name not in allowed and not name.startswith(BUILTIN_PREFIXES):
                unknown.setdefault(name, []).append(f"{uid} / {title}")
    assert not unknown, f"metrics that are neither contract names nor recording rules: {unknown}"


def test_recording_rules_used_exist_in_rule_files():
    """Every recording-rule name a dashboard uses is recorded by a file in alerts/."""
    recorded = set()
    for path in sorted((ROOT / "alerts").rglob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if isinstance(doc, dict):
            for group in doc.get("groups") or []:
                recorded |= {r["record"] for r in group.get("rules") or [] if "record" in r}
    assert "endpoint:sagemaker_requests:rate5m" in recorded, "alerts/ was not read"
    used = {n for _, _, e in queries.all_queries(EXAMPLE_VARIABLES) for n in metric_names(e) if ":" in n}
    assert used <= recorded, f"dashboards use recording rules no rule file records: {sorted(used - recorded)}"


# ------------------------------------------------------------------ PromQL against the real Prometheus


@pytest.mark.integration
def test_every_query_parses_in_prometheus(tmp_path):
    prom = Prometheus({"global": {"scrape_interval": "15s"}, "scrape_configs": []}, tmp_path)
    try:
        exprs = queries.all_queries(EXAMPLE_VARIABLES) + queries.all_queries(
            {k: ".*" for k in EXAMPLE_VARIABLES})
        exprs += queries.annotation_queries() + queries.variable_queries({k: ".*" for k in EXAMPLE_VARIABLES})
        for uid, title, expr in exprs:
            prom.query(expr)   # asserts status == success (an empty result is fine here)
    finally:
        prom.stop()


# ------------------------------------------------------------------ provisioning


def test_datasource_provisioning():
    doc = yaml.safe_load((ROOT / "provisioning/grafana/datasources/prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    prom = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    assert len(prom) == 1
    assert prom[0]["uid"] == DATASOURCE_UID
    assert prom[0]["url"] == "http://prometheus:9090"
    assert prom[0]["isDefault"] is True
    # Grafana's built-in Alertmanager datasource, read by the alerting UI the wall's banner links to
    (am,) = [d for d in doc["datasources"] if d["type"] == "alertmanager"]
    assert am["url"] == "http://alertmanager:9093" and am["jsonData"]["implementation"] == "prometheus"
    assert prom[0]["jsonData"]["alertmanagerUid"] == am["uid"]
    banner = next(p for p in dashboards.load("mlscope-wall")["panels"] if p["title"] == "Paging")
    assert any(f"alertmanager={am['name']}&" in link["url"] for link in banner["links"])


def test_dashboard_provider_and_grafana_ini():
    doc = yaml.safe_load((ROOT / "provisioning/grafana/dashboards/mlscope.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == PROVIDER_PATH
    ini = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    ini.read_string((ROOT / "provisioning/grafana/grafana.ini").read_text())
    assert ini.getboolean("auth.anonymous", "enabled") is True
    assert ini["auth.anonymous"]["org_role"] == "Viewer"
    assert ini["users"]["default_theme"] == "dark"
    home = Path(ini["dashboards"]["default_home_dashboard_path"])
    assert str(home.parent) == PROVIDER_PATH and home.name == dashboards.json_path("mlscope-wall").name
