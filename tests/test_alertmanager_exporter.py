"""`mlscope alertmanager-exporter` and the wall's paging banner that reads it.

A real Alertmanager with the shipped inhibit rules holds pages and tickets, one silence and two inhibitions;
the exporter runs as a real process and a real Prometheus scrapes it; the banner's PromQL is read from the
generated wall dashboard. Every expected count is worked out by hand beside the alerts below.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from helpers import (ROOT, Prometheus, assert_one_line_error, promtool_check_metrics, run_cli, samples,
                     scrape, scrape_config, start_exporter, value)
from test_alertmanager import post, running_alertmanager
from test_dashboard_promql import expr, promtool

from mlscope.alertmanager import PollError, count, fetch_alerts
from mlscope.settings import SettingError

SEVERITY_STATES = [(sev, st) for sev in ("page", "ticket") for st in ("notifying", "silenced", "inhibited")]

# What the real Alertmanager gets, with the shipped inhibit rules (provisioning/alertmanager/alertmanager.yml):
BURN = {"alertname": "SageMakerEndpointErrorBudgetBurn", "region": "us-east-1", "endpoint": "a"}
DEAD_EXPORTER = {"job": "sagemaker", "instance": "exporter-c", "region": "us-east-1"}
ALERTS = [
    {**BURN, "severity": "page"},                                           # page, notifying
    {"alertname": "GPULost", "severity": "page", "instance": "gpu-node-1", "gpu": "0"},   # page, notifying
    {"alertname": "GPULost", "severity": "page", "instance": "gpu-node-2", "gpu": "0"},   # page, silenced
    {"alertname": "TargetDown", "severity": "ticket", **DEAD_EXPORTER},     # ticket, notifying
    {"alertname": "SageMakerEndpointDown", "severity": "page", **DEAD_EXPORTER, "endpoint": "c"},  # page, inhibited
    # page, silenced AND inhibited (TargetDown of its exporter): counts as silenced
    {"alertname": "SageMakerEndpointDown", "severity": "page", **DEAD_EXPORTER, "endpoint": "e"},
    {**BURN, "severity": "ticket"},                                         # ticket, inhibited by the page
    {"alertname": "Watchdog", "severity": "ticket", "heartbeat": "true"},   # ticket, notifying
    {"alertname": "NoSeverity"},                                            # severity "", notifying
]
SILENCED = [("instance", "gpu-node-2"), ("endpoint", "e")]
EXPECTED = {("page", "notifying"): 2, ("page", "silenced"): 2, ("page", "inhibited"): 1,
            ("ticket", "notifying"): 2, ("ticket", "silenced"): 0, ("ticket", "inhibited"): 1,
            ("", "notifying"): 1}


def silence(base: str, name: str, value_: str) -> str:
    now = datetime.now(timezone.utc)
    body = {"matchers": [{"name": name, "value": value_, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "test", "comment": "maintenance"}
    resp = requests.post(base + "/api/v2/silences", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["silenceID"]


def counts_of(text: str) -> dict[tuple[str, str], float]:
    return {(labels["severity"], labels["state"]): v
            for labels, v in samples(text).get("mlscope_alertmanager_alerts", [])}


def wait_scrape(base: str, check, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(base)
        if check(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


# ------------------------------------------------------------------ unit


def test_count_classifies_by_status_and_always_has_pages_and_tickets():
    alerts = [
        {"labels": {"severity": "page"}, "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}},
        {"labels": {"severity": "page"}, "status": {"state": "suppressed", "silencedBy": ["s1"], "inhibitedBy": []}},
        {"labels": {"severity": "page"}, "status": {"state": "suppressed", "silencedBy": ["s1"],
                                                    "inhibitedBy": ["f1"]}},
        {"labels": {"severity": "ticket"}, "status": {"state": "suppressed", "silencedBy": [], "inhibitedBy": ["f2"]}},
        {"labels": {"severity": "info"}, "status": {"state": "unprocessed"}},
        {"labels": {}},
        {"labels": {"severity": "page"}, "status": ["odd"]},        # a status that is not an object: notifying
    ]
    got = count(alerts)
    assert got == {("page", "notifying"): 2, ("page", "silenced"): 2, ("page", "inhibited"): 0,
                   ("ticket", "notifying"): 0, ("ticket", "silenced"): 0, ("ticket", "inhibited"): 1,
                   ("info", "notifying"): 1, ("", "notifying"): 1}
    assert count([]) == {key: 0 for key in SEVERITY_STATES}


@pytest.mark.parametrize("answer", [{"alerts": []}, [1, 2], [{"status": {}}], None])
def test_count_refuses_what_is_not_a_list_of_alerts(answer):
    with pytest.raises(PollError, match="not a list of alerts"):
        count(answer)


def test_poller_drops_its_counts_on_any_failure_and_logs_once(caplog):
    from mlscope.alertmanager import AlertmanagerCollector, AlertmanagerPoller
    from mlscope.health import Health

    answers = [[{"labels": {"severity": "page"}}], RuntimeError("surprise"), PollError("refused"), []]

    def fetch():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    health = Health()
    poller = AlertmanagerPoller(fetch, health, interval=60)
    collector = AlertmanagerCollector(poller)

    def served() -> dict:
        return {(f.name, tuple(s.labels.values())): s.value for f in collector.collect() for s in f.samples}

    poller.poll_once()
    assert served()[("mlscope_alertmanager_alerts", ("page", "notifying"))] == 1
    assert served()[("mlscope_alertmanager_up", ())] == 1
    poller.poll_once()
    poller.poll_once()
    assert served() == {("mlscope_alertmanager_up", ()): 0}          # no counts at all, never stale ones
    assert not health.is_up("alertmanager")
    failed = [r.getMessage() for r in caplog.records if "polling Alertmanager failed" in r.getMessage()]
    assert failed == ["polling Alertmanager failed: unexpected RuntimeError: surprise; alert counts are left out "
                      "until it answers"]
    poller.poll_once()
    assert served()[("mlscope_alertmanager_alerts", ("page", "notifying"))] == 0 and health.is_up("alertmanager")


class _Server(http.server.ThreadingHTTPServer):
    """A local HTTP server answering every GET with one status and body (a broken or hostile Alertmanager)."""

    def __init__(self, status: int, body: bytes, delay: float = 0) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


@pytest.mark.parametrize("status,body,message", [
    (500, b"boom", "answered HTTP 500 to /api/v2/alerts"),
    (200, b"<html>not json</html>", "is not JSON"),
    (200, b'{"status": "success"}', "not a list of alerts"),
    (200, b"[" * 100_000, "is not JSON"),            # nested past Python's recursion limit
])
def test_a_broken_answer_is_one_line(status, body, message):
    with _Server(status, body) as server:
        with pytest.raises(PollError, match=message):
            count(fetch_alerts(server.url, timeout=5))
        assert server.paths == ["/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"]


def test_a_slow_or_absent_alertmanager_is_one_line():
    with _Server(200, b"[]", delay=2) as server:
        with pytest.raises(PollError, match="timed out"):
            fetch_alerts(server.url, timeout=0.3)
        url = server.url
    with pytest.raises(PollError, match="refused"):
        fetch_alerts(url, timeout=2)


@pytest.mark.parametrize("flag,needle", [
    (["--alertmanager-url", "alertmanager:9093"], "--alertmanager-url: must be an http:// or https:// URL"),
    (["--alertmanager-url", "http://user:secret@am:9093"], "--alertmanager-url: credentials in the URL"),
    (["--poll-interval", "-5s"], "--poll-interval"),
    (["--alertmanager-timeout", "soon"], "--alertmanager-timeout"),
])
def test_bad_settings_exit_2_with_one_line(flag, needle):
    assert_one_line_error(run_cli("alertmanager-exporter", "--listen", "127.0.0.1:0", *flag), needle)


def test_base_url_is_checked_once_at_start_up():
    from mlscope.alertmanager import base_url

    assert base_url(" http://am:9093/ ") == "http://am:9093"
    with pytest.raises(SettingError):
        base_url("am:9093")


# ------------------------------------------------------------------ the stack's wiring


def test_compose_runs_it_hardened_and_prometheus_scrapes_it():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["alertmanager-exporter"]
    assert svc["command"] == ["alertmanager-exporter", "--alertmanager-url", "http://alertmanager:9093"]
    assert svc["ports"] == ["127.0.0.1:9861:9861"]
    assert svc["healthcheck"]["test"] == ["CMD", "mlscope", "healthcheck", "http://127.0.0.1:9861/-/healthy"]
    assert svc["depends_on"] == {"alertmanager": {"condition": "service_healthy"}}
    # the shared hardening (YAML merge keys resolved): non-root, no capabilities, read-only root, no privilege gain
    assert (svc["user"], svc["read_only"], svc["cap_drop"], svc["security_opt"]) == (
        "10001:10001", True, ["ALL"], ["no-new-privileges:true"])
    jobs = {job["job_name"]: job for job in
            yaml.safe_load((ROOT / "provisioning/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["alertmanager-exporter"]["static_configs"] == [{"targets": ["alertmanager-exporter:9861"]}]


# ------------------------------------------------------------------ a real Alertmanager, exporter, Prometheus


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_counts_what_alertmanager_notifies_silences_and_inhibits(tmp_path):
    prom = exporter = None
    try:
        with running_alertmanager(tmp_path) as (am, _receiver):
            for name, matched in SILENCED:
                silence(am, name, matched)
            post(am, *ALERTS)
            exporter, base = start_exporter("alertmanager-exporter", "--alertmanager-url", am,
                                            "--poll-interval", "0.5s")
            text = wait_scrape(base, lambda t: counts_of(t) == EXPECTED)
            assert counts_of(text) == EXPECTED
            assert value(text, "mlscope_alertmanager_up") == 1
            assert value(text, "mlscope_collector_up", collector="alertmanager") == 1
            check = promtool_check_metrics(text)
            assert check.returncode == 0, check.stdout + check.stderr

            prom = Prometheus({"global": {"scrape_interval": "1s"},
                               "scrape_configs": [scrape_config("alertmanager-exporter", [base.split("//")[1]])]},
                              tmp_path)
            banner = expr("mlscope-wall", "Paging")
            assert float(prom.wait_for(f"({banner}) >= 0")[0]["value"][1]) == 2      # the two notifying pages
            assert float(prom.query(expr("mlscope-wall", "Pages held back", "A"))[0]["value"][1]) == 2   # silenced
            assert float(prom.query(expr("mlscope-wall", "Pages held back", "B"))[0]["value"][1]) == 1   # inhibited
        # Alertmanager has stopped: no counts (never a stale "nothing paging"), up 0, the failure counted
        text = wait_scrape(base, lambda t: value(t, "mlscope_alertmanager_up") == 0)
        assert value(text, "mlscope_alertmanager_up") == 0
        assert value(text, "mlscope_collector_up", collector="alertmanager") == 0
        assert value(text, "mlscope_collector_errors_total", collector="alertmanager") >= 1
        assert "mlscope_alertmanager_alerts" not in samples(text)
        assert promtool_check_metrics(text).returncode == 0
        assert float(prom.wait_for(f"({banner}) < 0")[0]["value"][1]) == -1        # PAGES UNKNOWN
        assert prom.query(expr("mlscope-wall", "Pages held back", "A")) == []
    finally:
        log = exporter.stop() if exporter else ""
        if prom is not None:
            prom.stop()
    assert "Traceback" not in log
    # one line when polling starts failing, not one per poll
    assert len([line for line in log.splitlines() if "polling Alertmanager failed" in line]) == 1, log


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_an_unreachable_alertmanager_at_start_up_is_served_as_down(tmp_path):
    from helpers import free_port

    exporter, base = start_exporter("alertmanager-exporter", "--alertmanager-url", f"http://127.0.0.1:{free_port()}",
                                    "--poll-interval", "1s")
    try:
        text = wait_scrape(base, lambda t: "mlscope_alertmanager_up 0.0" in t)
        assert value(text, "mlscope_alertmanager_up") == 0
        assert "mlscope_alertmanager_alerts" not in samples(text)
    finally:
        log = exporter.stop()
    assert "Traceback" not in log and "Connection refused" in log


# ------------------------------------------------------------------ the banner's PromQL on known series


@pytest.mark.integration
def test_banner_reads_the_exporter_and_shows_unknown_without_it(tmp_path):
    def exported(instance: str, page_notifying: int, silenced: int, minutes: int) -> dict[str, str]:
        base = f'job="alertmanager-exporter",instance="{instance}"'
        return {
            f'mlscope_alertmanager_alerts{{{base},severity="page",state="notifying"}}': f"{page_notifying}x{minutes}",
            f'mlscope_alertmanager_alerts{{{base},severity="page",state="silenced"}}': f"{silenced}x{minutes}",
            f'mlscope_alertmanager_alerts{{{base},severity="page",state="inhibited"}}': f"0x{minutes}",
            f'mlscope_alertmanager_alerts{{{base},severity="ticket",state="notifying"}}': f"5x{minutes}",
        }
    banner, silenced, inhibited = (expr("mlscope-wall", "Paging"), expr("mlscope-wall", "Pages held back", "A"),
                                   expr("mlscope-wall", "Pages held back", "B"))
    # nothing paging (tickets do not count): 0, not "no data"
    promtool(tmp_path, exported("am-1", 0, 0, 10), [(banner, "5m", [("{}", 0)])])
    # an HA pair sees the same alerts: the larger count, not the sum (3, not 3 + 2)
    promtool(tmp_path, {**exported("am-1", 3, 1, 10), **exported("am-2", 2, 1, 10)}, [
        (banner, "5m", [("{}", 3)]), (silenced, "5m", [("{}", 1)]), (inhibited, "5m", [("{}", 0)])])
    # the exporter's series stop at 10m (its target is down, or it cannot reach Alertmanager): -1, PAGES UNKNOWN
    promtool(tmp_path, exported("am-1", 1, 0, 10), [(banner, "20m", [("{}", -1)]), (silenced, "20m", [])])
    # and the dashboard shows -1 as PAGES UNKNOWN in orange
    from dashboards import load

    panel = next(p for p in load("mlscope-wall")["panels"] if p["title"] == "Paging")
    texts = {(m["options"]["from"], m["options"]["result"]["text"], m["options"]["result"]["color"])
             for m in panel["fieldConfig"]["defaults"]["mappings"]}
    assert (-1, "PAGES UNKNOWN", "orange") in texts and (0, "NOTHING PAGING", "green") in texts
