"""The `mlscope` command: one sub-command per exporter, plus the demo and price tools."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from typing import Callable, NoReturn, Sequence

from prometheus_client.registry import Collector

from . import __version__, logs
from .health import Health, ScrapeCollector
from .settings import COMMON_SETTINGS, Config, Setting, SettingError, boolean, listen_address, resolve
from .spec import ExporterSpec, Parts
from .web import MetricsServer, load_web_config

log = logging.getLogger("mlscope")

EXPORTERS = {
    "host-exporter": ("mlscope.host", "host CPU, memory, disk and network (node_exporter names)"),
    "gpu-exporter": ("mlscope.gpu", "NVIDIA GPUs through NVML"),
    "sagemaker-exporter": ("mlscope.sagemaker", "SageMaker endpoints from CloudWatch, with cost"),
    "alertmanager-exporter": ("mlscope.alertmanager", "alerts Alertmanager notifies, silences or inhibits"),
}
TOOLS = {
    "demo": ("mlscope.demo", "local AWS emulator and demo traffic (no AWS account needed)"),
    "prices": ("mlscope.prices", "rebuild the instance catalogue (specs, prices) from the AWS Pricing API"),
    "healthcheck": ("mlscope.healthcheck", "exit 0 when an exporter answers (the container healthcheck)"),
    "local": ("mlscope.local", "the docker-compose stack natively on 127.0.0.1, without Docker (make local)"),
    "web-config": ("mlscope.webconfig", "write a --web-config file: bcrypt basic auth, optional self-signed TLS"),
    "rightsize": ("mlscope.rightsize.cli", "recommend instance types and counts from Prometheus history"),
    "allocation": ("mlscope.allocation", "cost allocation and budget rules from alerts/allocation.yml"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def stop_on_signals(logger: logging.Logger, then: Callable[[], None] | None = None) -> threading.Event:
    """SIGTERM and SIGINT log one line and set the returned event; `then` (e.g. a server's shutdown) runs
    in its own thread, since it may block on the very loop the signal interrupted."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()
        if then is not None:
            threading.Thread(target=then, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def fail(prog: str, message: str, status: int = 2) -> NoReturn:
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(status)


def add_setting_flags(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    for setting in settings:
        if setting.file_only:
            continue
        flags = (setting.flag, *setting.aliases)
        extra = {"nargs": "?", "const": "true"} if setting.parse is boolean else {}
        default = f" (default: {setting.default})" if setting.default not in (None, "", [], {}) else ""
        parser.add_argument(*flags, dest=setting.name, default=None, metavar="VALUE",
                            help=f"{setting.help}{default}; env {setting.env}", **extra)
        if setting.parse is boolean:
            parser.add_argument(*("--no-" + f[2:] for f in flags), dest=setting.name, action="store_const",
                                const="false", help=argparse.SUPPRESS)


def exporter_settings(spec: ExporterSpec) -> list[Setting]:
    return [Setting("listen", listen_address, ("", spec.default_port),
                    f"address to serve on, HOST:PORT (use 127.0.0.1:{spec.default_port} for loopback only)",
                    aliases=("--web.listen-address",)),
            *COMMON_SETTINGS, *spec.settings]


def build_collectors(spec: ExporterSpec, cfg: Config) -> tuple[list[Collector], Parts]:
    """The exporter's collectors as served on /metrics, and its parts (whose services the caller runs)."""
    health = Health()
    parts = spec.build(cfg, health)
    collectors = [ScrapeCollector(name, collector, health) for name, collector in parts.scrape.items()]
    collectors += parts.direct
    collectors.append(health)  # last, so it reports the runs of this very scrape
    return collectors, parts


def demo_settings(prog: str, description: str, settings: Sequence[Setting], argv: Sequence[str]):
    """A demo tool's settings from its flags and MLSCOPE_* variables (no config file), logging set up."""
    parser = OneLineParser(prog=prog, description=description)
    add_setting_flags(parser, settings)
    cfg = resolve(settings, vars(parser.parse_args(list(argv))), {})
    logs.setup(cfg.log_level)
    return cfg


def run_exporter(spec: ExporterSpec, argv: Sequence[str]) -> int:
    prog = f"mlscope {spec.command}"
    settings = exporter_settings(spec)
    parser = OneLineParser(prog=prog, description=spec.title)
    add_setting_flags(parser, settings)
    args = parser.parse_args(argv)
    try:
        cfg = resolve(settings, vars(args))
        logs.setup(cfg.log_level)
    except SettingError as exc:
        fail(prog, str(exc))
    return serve_exporter(spec, cfg)


def serve_exporter(spec: ExporterSpec, cfg: Config) -> int:
    """Serve the spec's collectors with already resolved settings (listen, web_config and the spec's own)."""
    prog = f"mlscope {spec.command}"
    try:
        web = load_web_config(cfg.web_config)
        collectors, parts = build_collectors(spec, cfg)
        server = MetricsServer(cfg.listen, collectors, web, spec.title, f"mlscope {__version__}",
                               read_timeout=cfg.web_read_timeout, idle_timeout=cfg.web_idle_timeout,
                               max_connections=cfg.web_max_connections)
    except SettingError as exc:
        fail(prog, str(exc))

    for service in parts.services:
        service.start()
    stop_on_signals(log, server.shutdown)
    host, port = server.server_address[:2]
    scheme = "https" if web.ssl_context else "http"
    log.info("%s %s listening on %s://%s:%s/metrics", prog, __version__, scheme, host or "0.0.0.0", port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        for service in parts.services:
            try:
                service.stop()
            except Exception as exc:  # stopping must never turn into a traceback
                log.warning("stopping %s: %s", type(service).__name__, exc)
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {**EXPORTERS, **TOOLS}
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: mlscope [--version] COMMAND [options]", "", "commands:"]
        lines += [f"  {name:<20} {help_}" for name, (_, help_) in commands.items()]
        lines += ["", "Run `mlscope COMMAND --help` for a command's options."]
        print("\n".join(lines))
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"mlscope {__version__}")
        return 0
    if argv[0] not in commands:
        fail("mlscope", f"unknown command {argv[0]!r} (choose from {', '.join(commands)})")
    module = importlib.import_module(commands[argv[0]][0])
    try:
        if argv[0] in EXPORTERS:
            return run_exporter(module.SPEC, argv[1:])
        return module.main(argv[1:])
    except SettingError as exc:
        fail(f"mlscope {argv[0]}", str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, never a traceback (details at --log-level debug)
        log.debug("unexpected error", exc_info=True)
        fail(f"mlscope {argv[0]}", f"unexpected {type(exc).__name__}: {exc}", status=1)


if __name__ == "__main__":
    sys.exit(main())
