"""The compose profile `longterm` (VictoriaMetrics + vmagent) and its Grafana datasource, checked with the
official Compose binary and the real vmagent (the same 1.79.5 the profile's images pin)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from helpers import ROOT, require_binary
from test_compose import ENV, compose_config

LONGTERM = {"victoriametrics", "vmagent"}


@pytest.fixture(scope="module")
def longterm() -> dict:
    result = compose_config("--profile", "longterm", "config", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_longterm_is_a_profile_off_by_default(longterm):
    default = set(compose_config("config", "--services", env=ENV).stdout.split())
    assert LONGTERM.isdisjoint(default)
    assert LONGTERM <= set(longterm)
    for name in LONGTERM:
        assert longterm[name]["profiles"] == ["longterm"]


def test_longterm_services_are_hardened_pinned_and_on_loopback(longterm):
    for name in LONGTERM:
        service = longterm[name]
        assert service["image"].endswith(":v1.79.5"), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["healthcheck"]["test"][-1].endswith("/health"), name
        assert [p["host_ip"] for p in service["ports"]] == ["127.0.0.1"], name
    assert longterm["vmagent"]["user"] == "65534:65534"
    assert any(v["type"] == "volume" and v["target"] == "/storage" for v in longterm["victoriametrics"]["volumes"])


def test_vmagent_writes_where_the_datasource_and_prometheus_remote_write_read(longterm):
    command = longterm["vmagent"]["command"]
    assert "-remoteWrite.url=http://victoriametrics:8428/api/v1/write" in command
    datasources = yaml.safe_load((ROOT / "provisioning/grafana/datasources/victoriametrics.yml").read_text())
    [vm] = datasources["datasources"]
    assert (vm["uid"], vm["type"], vm["url"]) == ("victoriametrics", "prometheus", "http://victoriametrics:8428")
    # the commented remote_write block of prometheus.yml names the same service
    assert "- url: http://victoriametrics:8428/api/v1/write" in (
        ROOT / "provisioning/prometheus/prometheus.yml").read_text()


@pytest.mark.integration
def test_vmagent_accepts_prometheus_scrape_config_as_the_profile_runs_it(longterm):
    vmagent = require_binary("vmagent")
    flags = [f for f in longterm["vmagent"]["command"] if f.startswith("-promscrape.config.")]
    result = subprocess.run([vmagent, f"-promscrape.config={ROOT / 'provisioning/prometheus/prometheus.yml'}",
                             "-promscrape.config.dryRun", "-loggerLevel=ERROR", *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # and without the profile's non-strict flag it would refuse Prometheus' rule_files/alerting sections,
    # which is why the flag is there
    strict = subprocess.run([vmagent, f"-promscrape.config={ROOT / 'provisioning/prometheus/prometheus.yml'}",
                             "-promscrape.config.dryRun", "-loggerLevel=ERROR"],
                            capture_output=True, text=True, timeout=60)
    assert strict.returncode != 0


@pytest.mark.integration
def test_the_profile_pins_the_version_the_tests_run():
    dpkg = shutil.which("dpkg-query")
    require_binary("victoria-metrics")
    if dpkg is None:
        pytest.skip("no dpkg-query: cannot read the installed victoria-metrics version")
    version = subprocess.run([dpkg, "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True,
                             timeout=30).stdout
    assert version.split("+", 1)[0] == "1.79.5"
