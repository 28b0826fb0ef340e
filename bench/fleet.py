"""A fleet of simulated exporters in one process: `python -m bench.fleet --gpu-hosts N --host-hosts M`.

Each simulated machine is its own target on its own loopback port, served by the real exporter code:
GPU hosts by `mlscope gpu-exporter --simulate 8`'s collectors (fake NVML), host machines by the host
exporter's collectors reading this machine. All GPU hosts share one simulator (same values), which is
enough for scrapers and stores: each target is still a distinct `instance`. With --sagemaker-endpoints N,
one SageMaker-exporter shard (one region) polls N endpoints of a fake AWS (bench/sagemaker_shard.py); run
one process per shard. The addresses are written as JSON ({"gpu": [...], "host": [...], "sagemaker": [...]})
to --targets-file once every port listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from mlscope import __version__
from mlscope.cli import build_collectors, exporter_settings
from mlscope.settings import resolve
from mlscope.spec import ExporterSpec, Parts
from mlscope.web import MetricsServer, WebConfig

from . import sagemaker_shard as shard


class Snapshot:
    """The collectors' output, collected at most once per `ttl` seconds whichever target is scraped:
    a fleet of 500 simulated hosts then costs this process one collection per second, not 500."""

    def __init__(self, collectors: list, ttl: float = 1.0) -> None:
        self.collectors = collectors
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -ttl
        self._families: list = []

    def collect(self):
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._families = [family for c in self.collectors for family in c.collect()]
                self._at = time.monotonic()
            return self._families


def serve_many(spec: ExporterSpec, count: int, flags: dict,
               prepare: Callable[[Parts], None] = lambda parts: None) -> tuple[list[MetricsServer], list]:
    """`count` servers on free loopback ports, all serving one instance of the exporter's collectors;
    `prepare` sees the exporter's parts before its services start."""
    if not count:
        return [], []
    cfg = resolve(exporter_settings(spec), flags, environ={})
    collectors, parts = build_collectors(spec, cfg)
    prepare(parts)
    collectors = [Snapshot(collectors)]
    for service in parts.services:
        service.start()
    servers = [MetricsServer(("127.0.0.1", 0), collectors, WebConfig(), spec.title, f"mlscope {__version__}")
               for _ in range(count)]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 1.0}, daemon=True).start()
    return servers, parts.services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-hosts", type=int, default=0)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--host-hosts", type=int, default=0)
    parser.add_argument("--sagemaker-endpoints", type=int, default=0)
    parser.add_argument("--region", default="us-east-1", help="the SageMaker shard's region")
    parser.add_argument("--cloudwatch-latency", type=float, default=shard.CLOUDWATCH_LATENCY,
                        help="seconds the fake AWS takes per GetMetricData call")
    parser.add_argument("--sagemaker-latency", type=float, default=shard.SAGEMAKER_LATENCY,
                        help="seconds the fake AWS takes per other call")
    parser.add_argument("--cycles-file", type=Path, help="the SageMaker poller's CPU and wall time per cycle (JSON)")
    parser.add_argument("--endpoint-url", help="the SageMaker shard polls this AWS emulator (mlscope demo aws) "
                                               "through boto3 instead of the fake AWS")
    parser.add_argument("--targets-file", type=Path, required=True)
    args = parser.parse_args(argv)

    from mlscope.gpu import SPEC as GPU
    from mlscope.host import SPEC as HOST
    from mlscope.sagemaker import SPEC as SAGEMAKER

    def prepare_shard(parts: Parts) -> None:
        if not args.endpoint_url:
            shard.use_fake_aws(parts.services, args.sagemaker_endpoints, args.cloudwatch_latency,
                               args.sagemaker_latency)
        if args.cycles_file:
            for poller in parts.services:
                shard.CycleMeter(poller, args.cycles_file)

    gpu_servers, gpu_services = serve_many(GPU, args.gpu_hosts, {"simulate": str(args.gpus_per_host)})
    host_servers, host_services = serve_many(HOST, args.host_hosts, {})
    sm_servers, sm_services = serve_many(SAGEMAKER, int(args.sagemaker_endpoints > 0),
                                         shard.flags(args.region, args.endpoint_url), prepare_shard)
    targets = {"gpu": [f"127.0.0.1:{s.server_address[1]}" for s in gpu_servers],
               "host": [f"127.0.0.1:{s.server_address[1]}" for s in host_servers],
               "sagemaker": [f"127.0.0.1:{s.server_address[1]}" for s in sm_servers]}
    partial = args.targets_file.with_suffix(".tmp")
    partial.write_text(json.dumps(targets))
    os.replace(partial, args.targets_file)  # readers never see half a file

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in gpu_servers + host_servers + sm_servers:
        server.server_close()
    for service in gpu_services + host_services + sm_services:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
