"""`mlscope alertmanager-exporter`: what Alertmanager lets through, as metrics Grafana can show.

Grafana's Alertmanager datasource feeds its alerting UI but returns nothing to a dashboard panel, and
Prometheus' ALERTS knows nothing of silences or inhibitions. This exporter polls Alertmanager's API v2
(`GET /api/v2/alerts?active=true&silenced=true&inhibited=true`: every alert that has not resolved, with
the status Alertmanager computes for it at that moment) in the background and counts the alerts per
severity and state. A scrape only reads the last poll.

| metric                                     | labels            | meaning                                     |
|--------------------------------------------|-------------------|---------------------------------------------|
| mlscope_alertmanager_alerts                | severity, state   | alerts now: state = notifying, silenced or  |
|                                            |                   | inhibited (silenced wins when both apply)    |
| mlscope_alertmanager_up                    |                   | 1 when the last poll got a valid answer     |

`severity` is the alert's own label ("" when it has none); page and ticket are always present after a good
poll, at 0 when nothing has them, so "0 pages" and "no answer" differ. After a failed poll the alert counts
are left out (never a stale "nothing paging"), mlscope_alertmanager_up is 0, and the failure counts in
mlscope_collector_errors_total{collector="alertmanager"}.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .health import Health
from .settings import Config, Setting, SettingError, positive_duration, string
from .spec import BackgroundLoop, ExporterSpec, Parts

log = logging.getLogger(__name__)

COLLECTOR = "alertmanager"
STATES = ("notifying", "silenced", "inhibited")
SEVERITIES = ("page", "ticket")          # the contract's severities: always exported after a good poll
ALERTS_PATH = "/api/v2/alerts"
QUERY = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
MAX_BODY = 32 * 1024 * 1024              # bytes: a larger answer is refused, not read into memory

SETTINGS = [
    Setting("alertmanager_url", string, "http://127.0.0.1:9093", "Alertmanager's base URL (http:// or https://)"),
    Setting("poll_interval", positive_duration, 15.0, "how often to ask Alertmanager, e.g. 15s (seconds)"),
    Setting("alertmanager_timeout", positive_duration, 10.0, "seconds to wait for Alertmanager's answer"),
]


class PollError(Exception):
    """One line that says why a poll failed."""


def base_url(raw: str) -> str:
    parsed = urllib.parse.urlsplit(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingError(f"--alertmanager-url: must be an http:// or https:// URL, got {raw!r}")
    if parsed.username or parsed.password:
        raise SettingError("--alertmanager-url: credentials in the URL are not supported")
    return raw.strip().rstrip("/")


def state_of(alert: dict) -> str:
    status = alert.get("status")
    status = status if isinstance(status, dict) else {}
    if status.get("silencedBy"):
        return "silenced"
    if status.get("inhibitedBy"):
        return "inhibited"
    return "notifying"


def count(alerts: Any) -> Counter:
    """(severity, state) -> how many alerts; raises PollError when the answer is not a list of alerts."""
    if not isinstance(alerts, list) or not all(isinstance(a, dict) and isinstance(a.get("labels"), dict)
                                               for a in alerts):
        raise PollError("the answer is not a list of alerts with labels")
    counts = Counter({(severity, state): 0 for severity in SEVERITIES for state in STATES})
    for alert in alerts:
        counts[(str(alert["labels"].get("severity", "")), state_of(alert))] += 1
    return counts


def fetch_alerts(url: str, timeout: float) -> Any:
    request = urllib.request.Request(f"{url}{ALERTS_PATH}?{urllib.parse.urlencode(QUERY)}",
                                     headers={"Accept": "application/json", "User-Agent": "mlscope"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise PollError(f"{url} answered HTTP {exc.code} to {ALERTS_PATH}") from None
    except urllib.error.URLError as exc:
        raise PollError(f"{url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, TLS, a broken HTTP answer
        raise PollError(f"{url}: {exc or type(exc).__name__}") from None
    if len(body) > MAX_BODY:
        raise PollError(f"{url}: the answer is larger than {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PollError(f"{url}: the answer to {ALERTS_PATH} is not JSON") from None


class AlertmanagerPoller(BackgroundLoop):
    """Asks Alertmanager every `interval` and keeps the counts of its last answer."""

    def __init__(self, fetch: Callable[[], Any], health: Health, interval: float) -> None:
        self.fetch = fetch
        self.health = health
        self.interval = interval
        self.counts: Counter | None = None   # the last poll's; None before the first and after a failure
        self._failing = False
        super().__init__("alertmanager poller")
        health.register(COLLECTOR)

    def _run(self) -> None:
        self._repeat(self.poll_once, lambda: self.interval)

    def poll_once(self) -> None:
        started = time.perf_counter()
        try:
            counts = count(self.fetch())
        except Exception as exc:  # the loop must outlive any answer; never a traceback
            self.counts = None
            self.health.observe(COLLECTOR, False, time.perf_counter() - started)
            if not self._failing:  # one line when it starts failing, not one per poll
                why = exc if isinstance(exc, PollError) else f"unexpected {type(exc).__name__}: {exc}"
                log.error("polling Alertmanager failed: %s; alert counts are left out until it answers", why)
                log.debug("poll traceback", exc_info=True)
            self._failing = True
            return
        self.counts = counts
        self.health.observe(COLLECTOR, True, time.perf_counter() - started)
        if self._failing:
            log.info("Alertmanager answers again")
        self._failing = False


class AlertmanagerCollector(Collector):
    """The last poll as metric families; never calls Alertmanager."""

    def __init__(self, poller: AlertmanagerPoller) -> None:
        self.poller = poller

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        counts = self.poller.counts
        up = GaugeMetricFamily("mlscope_alertmanager_up", "1 when Alertmanager's last answer to the exporter's "
                               "poll was a valid list of alerts, else 0.")
        up.add_metric([], 0 if counts is None else 1)
        yield up
        if counts is None:
            return
        alerts = GaugeMetricFamily("mlscope_alertmanager_alerts", "Alerts Alertmanager holds now, by severity "
                                   "label and state: notifying (sent to receivers), silenced, or inhibited "
                                   "(a silenced alert that is also inhibited counts as silenced).",
                                   labels=["severity", "state"])
        for (severity, state), n in sorted(counts.items()):
            alerts.add_metric([severity, state], n)
        yield alerts


def build(cfg: Config, health: Health) -> Parts:
    url = base_url(cfg.alertmanager_url)
    poller = AlertmanagerPoller(lambda: fetch_alerts(url, cfg.alertmanager_timeout), health, cfg.poll_interval)
    return Parts(direct=[AlertmanagerCollector(poller)], services=[poller])


SPEC = ExporterSpec(command="alertmanager-exporter", title="Alertmanager alerts exporter", default_port=9861,
                    settings=SETTINGS, build=build)
