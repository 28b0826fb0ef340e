"""`make local`: the compose stack, natively on 127.0.0.1, from the same provisioning files.

Prometheus and Alertmanager come from PATH (Debian: prometheus, prometheus-alertmanager);
the exporters, the AWS emulator and the demo traffic run from this checkout. The shipped
prometheus.yml and alertmanager.yml are rewritten only where compose and loopback differ:
service names become 127.0.0.1:PORT, rule files point into alerts/, secrets files into a
local directory. The end-to-end test drives this same class.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "provisioning"
DEMO_ENV = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}

# compose service -> (default local port, port inside compose)
SERVICES = {
    "prometheus": (9090, 9090),
    "alertmanager": (9093, 9093),
    "host-exporter": (9856, 9856),
    "gpu-exporter-sim": (9860, 9857),
    "sagemaker-exporter": (9858, 9858),
    "rightsizer": (9859, 9859),
    "aws-emulator": (5000, 5000),
    "oncall-webhook": (9095, 9095),
}
# Prometheus scrapes itself as localhost:9090 in compose.
ALIASES = {"localhost": "prometheus"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Options:
    data_dir: Path = ROOT / "data" / "local"
    ports: dict[str, int] = field(default_factory=lambda: {k: v[0] for k, v in SERVICES.items()})
    scrape_interval: str | None = None       # e.g. "2s" for tests; None keeps the shipped values
    evaluation_interval: str | None = None
    webhook_url: str | None = None           # every Alertmanager webhook goes here (the e2e receiver)
    sagemaker_poll: str | None = None        # e.g. "5s" for tests
    sagemaker_delay: str | None = None       # e.g. "90s" for tests
    rightsize_args: tuple[str, ...] = ()     # e.g. ("--interval", "10s") for tests
    backfill: str = "30m"
    quiet: bool = False

    @classmethod
    def ephemeral(cls, data_dir: Path, **kwargs) -> "Options":
        return cls(data_dir=data_dir, ports={k: free_port() for k in SERVICES}, **kwargs)


class LocalStack:
    def __init__(self, options: Options):
        self.o = options
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = options.data_dir / "logs"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.o.ports[service]}"

    # ---- config rewriting ----

    def _address(self, target: str) -> str | None:
        host, _, port = target.rpartition(":")
        host = ALIASES.get(host, host)
        for service, (_, inner) in SERVICES.items():
            if host == service and int(port) == inner:
                return f"127.0.0.1:{self.o.ports[service]}"
        return None  # a target that does not run natively (e.g. the real GPU exporter)

    def prometheus_config(self) -> dict:
        cfg = yaml.safe_load((PROVISIONING / "prometheus" / "prometheus.yml").read_text())
        glob = cfg.setdefault("global", {})
        if self.o.scrape_interval:
            glob["scrape_interval"] = self.o.scrape_interval
            glob["scrape_timeout"] = self.o.scrape_interval
        if self.o.evaluation_interval:
            glob["evaluation_interval"] = self.o.evaluation_interval
        cfg["rule_files"] = [str(p) for p in self.rule_files()]
        for am in cfg.get("alerting", {}).get("alertmanagers", []):
            for static in am.get("static_configs", []):
                static["targets"] = [a for a in map(self._address, static["targets"]) if a]
        for job in cfg.get("scrape_configs", []):
            # DNS discovery of compose services becomes static loopback targets
            for dns in job.pop("dns_sd_configs", []):
                targets = [f"{name}:{dns['port']}" for name in dns["names"]]
                job.setdefault("static_configs", []).append({"targets": targets})
            if self.o.scrape_interval:
                job["scrape_interval"] = self.o.scrape_interval
                job.pop("scrape_timeout", None)
            for static in job.get("static_configs", []):
                static["targets"] = [a for a in map(self._address, static["targets"]) if a]
        return cfg

    def rule_files(self) -> list[Path]:
        """The shipped rule files; with a test evaluation interval, copies whose groups all use it."""
        shipped = sorted((ROOT / "alerts").glob("*.rules.yml"))
        if not self.o.evaluation_interval:
            return shipped
        out = self.o.data_dir / "rules"
        out.mkdir(parents=True, exist_ok=True)
        copies = []
        for path in shipped:
            rules = yaml.safe_load(path.read_text())
            for group in rules["groups"]:
                group.pop("interval", None)
            copies.append(out / path.name)
            copies[-1].write_text(yaml.safe_dump(rules, sort_keys=False))
        return copies

    def alertmanager_config(self, secrets: Path) -> dict:
        cfg = yaml.safe_load((PROVISIONING / "alertmanager" / "alertmanager.yml").read_text())
        if self.o.scrape_interval:  # test speed: deliver quickly
            route = cfg.setdefault("route", {})
            route["group_wait"] = "1s"
            route["group_interval"] = "2s"
        rewrite_receivers(cfg, secrets, self.o.webhook_url or self.url("oncall-webhook"))
        return cfg

    # ---- processes ----

    def _start(self, name: str, args: list[str], env: dict | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                            cwd=ROOT, start_new_session=True)

    def _wait(self, name: str, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} not ready at {url} after {timeout:.0f}s; see {self.logs / (name + '.log')}")

    def mlscope(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mlscope", *args]

    def start(self) -> "LocalStack":
        for binary in ("prometheus", "prometheus-alertmanager"):
            if not shutil.which(binary):
                raise RuntimeError(f"{binary} not found on PATH; install it: apt-get install -y "
                                   f"{'prometheus' if binary == 'prometheus' else 'prometheus-alertmanager'}")
        d, p = self.o.data_dir, self.o.ports
        d.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all(d, p)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, d: Path, p: dict[str, int]) -> None:
        aws = self.url("aws-emulator")
        if not self.o.webhook_url:
            self._start("oncall-webhook", self.mlscope("demo", "oncall",
                                                        "--listen", f"127.0.0.1:{p['oncall-webhook']}"))
        self._start("aws-emulator", self.mlscope("demo", "aws", "--listen", f"127.0.0.1:{p['aws-emulator']}"))
        self._start("host-exporter", self.mlscope("host-exporter", "--listen", f"127.0.0.1:{p['host-exporter']}"),
                    {"MLSCOPE_INSTANCE_TYPE": os.environ.get("MLSCOPE_INSTANCE_TYPE", "g5.12xlarge")})
        self._start("gpu-exporter-sim", self.mlscope("gpu-exporter", "--simulate", "4",
                                                      "--listen", f"127.0.0.1:{p['gpu-exporter-sim']}"))
        self._wait("aws-emulator", aws + "/moto-api/")
        self._start("demo-traffic", self.mlscope("demo", "traffic", "--aws-endpoint", aws,
                                                  "--backfill", self.o.backfill), DEMO_ENV)
        sm_env = {**DEMO_ENV, "MLSCOPE_ENDPOINT_URL": aws}
        if self.o.sagemaker_poll:
            sm_env["MLSCOPE_POLL_INTERVAL"] = self.o.sagemaker_poll
        if self.o.sagemaker_delay:
            sm_env["MLSCOPE_DELAY"] = self.o.sagemaker_delay
        self._start("sagemaker-exporter", self.mlscope(
            "sagemaker-exporter", "--config", str(PROVISIONING / "mlscope" / "sagemaker.yml"),
            "--listen", f"127.0.0.1:{p['sagemaker-exporter']}"), sm_env)

        secrets = d / "alertmanager-secrets"
        am_cfg = d / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(self.alertmanager_config(secrets), sort_keys=False))
        self._start("alertmanager", ["prometheus-alertmanager", f"--config.file={am_cfg}",
                                     f"--storage.path={d / 'alertmanager-data'}",
                                     f"--web.listen-address=127.0.0.1:{p['alertmanager']}",
                                     "--cluster.listen-address="])
        self.start_prometheus()
        self._start("rightsizer", self.mlscope("rightsize", "--serve", "--prometheus", self.url("prometheus"),
                                               "--listen", f"127.0.0.1:{p['rightsizer']}", *self.o.rightsize_args))
        for name in ("host-exporter", "gpu-exporter-sim", "sagemaker-exporter", "rightsizer"):
            self._wait(name, self.url(name) + "/-/healthy")
        self._wait("alertmanager", self.url("alertmanager") + "/-/ready")

    def start_prometheus(self) -> None:
        d = self.o.data_dir
        prom_cfg = d / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))
        self._start("prometheus", ["prometheus", f"--config.file={prom_cfg}",
                                   f"--storage.tsdb.path={d / 'prometheus-data'}",
                                   f"--web.listen-address=127.0.0.1:{self.o.ports['prometheus']}",
                                   "--web.enable-lifecycle", "--storage.tsdb.retention.time=30d"])
        self._wait("prometheus", self.url("prometheus") + "/-/ready")

    def stop_service(self, name: str, timeout: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)


def rewrite_receivers(cfg: dict, secrets: Path, webhook_url: str | None) -> None:
    """Point *_file secrets at local placeholders and every webhook at the local on-call stand-in."""
    secrets.mkdir(parents=True, exist_ok=True)

    def localise(conf: dict) -> None:
        for key, val in list(conf.items()):
            if key.endswith("_file") and isinstance(val, str):
                local = secrets / Path(val).name
                if not local.exists():
                    local.write_text("http://127.0.0.1:9/unset" if "url" in key else "local-placeholder")
                conf[key] = str(local)

    localise(cfg.get("global", {}))
    for receiver in cfg.get("receivers", []):
        for key, configs in receiver.items():
            if not isinstance(configs, list):
                continue
            for conf in configs:
                localise(conf)
                if key == "webhook_configs" and webhook_url:
                    conf["url"] = webhook_url.rstrip("/") + urllib.parse.urlsplit(conf["url"]).path
    cfg["templates"] = [str(PROVISIONING / "alertmanager" / "templates" / "*.tmpl")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make local", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "local"), help="TSDB, logs and generated configs")
    args = parser.parse_args(argv)
    stack = LocalStack(Options(data_dir=Path(args.data_dir)))
    try:
        stack.start()
    except RuntimeError as exc:
        print(f"make local: error: {exc}", file=sys.stderr)
        return 2
    print("MLScope is running natively on 127.0.0.1 (Ctrl-C stops everything):")
    for name in ("prometheus", "alertmanager", "host-exporter", "gpu-exporter-sim", "sagemaker-exporter",
                 "rightsizer", "aws-emulator", "oncall-webhook"):
        print(f"  {name:<20} {stack.url(name)}")
    print(f"  pages and heartbeats are logged in {stack.logs / 'oncall-webhook.log'}")
    print(f"  logs                 {stack.logs}")
    print("Grafana is not part of the native stack: import dashboards/json/*.json into any Grafana 11.")
    stopped = False

    def on_signal(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopped:
            for name, proc in list(stack.procs.items()):
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {stack.logs / (name + '.log')}", file=sys.stderr)
                    stack.procs.pop(name)
            time.sleep(0.5)
    finally:
        print("stopping...")
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
