"""Shared pieces of the SageMaker exporter tests: a moto server, endpoints, datapoints, a fault proxy."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import boto3
import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from mlscope.health import Health
from mlscope.sagemaker.aws import Aws, Stats
from mlscope.sagemaker.collector import SageMakerCollector
from mlscope.sagemaker.config import Target
from mlscope.sagemaker.cost import PriceBook
from mlscope.sagemaker.inventory import Inventory
from mlscope.sagemaker.poller import Poller

ROLE = "arn:aws:iam::123456789012:role/sagemaker-test"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

logging.getLogger("werkzeug").setLevel(logging.ERROR)


INSTANCE_NS = "/aws/sagemaker/Endpoints"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Test credentials for boto3's chain; modules that import this fixture get it automatically."""
    for key, val in CREDS.items():
        monkeypatch.setenv(key, val)


class Moto:
    """The AWS emulator (`mlscope demo aws`: moto with MLScope's documented patches) in this process:
    real HTTP; boto3 talks to it like to AWS."""

    def __init__(self) -> None:
        from mlscope.demo.aws import start_emulator
        self.server, self.url = start_emulator()

    def reset(self) -> None:
        requests.post(self.url + "/moto-api/reset", timeout=10)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def moto():
    """One emulator per test module (tests reset it, or use their own regions)."""
    server = Moto()
    yield server
    server.stop()


def client(url: str, service: str, region: str = "us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def create_endpoint(url: str, name: str, variants: list[tuple[str, str, int]] | None = None,
                    tags: dict | None = None, region: str = "us-east-1", serverless: list[str] = (),
                    asynchronous: bool = False, provisioned: int = 0) -> None:
    """variants: [(variant, instance type, count)]; `serverless`: variant names with a ServerlessConfig (2 GB,
    MaxConcurrency 5, `provisioned` ProvisionedConcurrency if not 0); `asynchronous`: an AsyncInferenceConfig."""
    sm = client(url, "sagemaker", region)
    try:
        sm.create_model(ModelName="model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    except sm.exceptions.ClientError:
        pass
    pvs = []
    for vname, itype, count in variants or [("AllTraffic", "ml.m5.xlarge", 1)]:
        pv = {"VariantName": vname, "ModelName": "model"}
        if vname in serverless:
            pv["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5,
                                      **({"ProvisionedConcurrency": provisioned} if provisioned else {})}
        else:
            pv.update(InitialInstanceCount=count, InstanceType=itype)
        pvs.append(pv)
    extra = {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://bucket/out"}}} if asynchronous else {}
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=pvs, **extra)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config",
                       Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])


def put_latencies(url: str, endpoint: str, ts: float, values: list[float], counts: list[float],
                  variant: str = "AllTraffic") -> None:
    """ModelLatency samples (microseconds) as CloudWatch takes them from a client: values and their counts."""
    client(url, "cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Timestamp": dt.datetime.fromtimestamp(ts, dt.timezone.utc),
        "Values": values, "Counts": counts,
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]}])


def put(url: str, endpoint: str, metric: str, ts: float, value: float | None = None, variant: str = "AllTraffic",
        namespace: str = "AWS/SageMaker", stats: dict | None = None, region: str = "us-east-1") -> None:
    datum = {"MetricName": metric, "Timestamp": dt.datetime.fromtimestamp(ts, dt.timezone.utc),
             "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]}
    if stats is not None:
        datum["StatisticValues"] = stats
    else:
        datum["Value"] = value
    client(url, "cloudwatch", region).put_metric_data(Namespace=namespace, MetricData=[datum])


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def base_time() -> float:
    """A period boundary two hours ago: datapoints after it are within CloudWatch's (and moto's) range."""
    return (int(time.time()) // 60) * 60 - 7200


def make_poller(url: str, clock, region: str = "us-east-1", statistics=(), delay: float = 120, period: float = 60,
                poll_interval: float = 60, health: Health | None = None, timeout: float = 5, max_attempts: int = 2,
                prices: dict | None = None, idle_after: float = 900, idle_poll_interval: float = 60,
                list_metrics_interval: float = 0, statistics_api: str = "auto",
                max_statistics_per_second: float = 100.0, **inventory_kw) -> Poller:
    """A poller on a test clock. Unlike the exporter's defaults, it asks for every metric (no ListMetrics)
    and fetches utilization of variants without traffic every minute, unless a test says otherwise."""
    aws = Aws(Target(region, url), Stats(), max_attempts=max_attempts, timeout=timeout)
    inventory = Inventory(aws, clock=clock, **inventory_kw)
    return Poller(aws, inventory, PriceBook.load(overrides=prices), health or Health(), poll_interval=poll_interval,
                  period=period, delay=delay, statistics=None if statistics is None else list(statistics),
                  clock=clock, idle_after=idle_after, idle_poll_interval=idle_poll_interval,
                  list_metrics_interval=list_metrics_interval, statistics_api=statistics_api,
                  max_statistics_per_second=max_statistics_per_second)


def summed(text: str, name: str, **labels) -> float:
    """The sum of every sample named `name` whose labels include `labels` (0 when there is none)."""
    from helpers import samples
    return sum(v for lbls, v in samples(text).get(name, []) if all(lbls.get(k) == str(x) for k, x in labels.items()))


def exposition(*pollers: Poller, health: Health | None = None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SageMakerCollector(pollers))
    if health is not None:
        registry.register(health)
    return generate_latest(registry).decode()


# ---- a proxy in front of moto that injects faults (throttling, 5xx) like AWS would answer them ----

def _cbor_text(s: str) -> bytes:
    b = s.encode()
    return (bytes([0x60 + len(b)]) if len(b) < 24 else bytes([0x78, len(b)])) + b


class FaultProxy:
    """Forwards to `upstream`; while `faults[operation]` (or `faults["*"]`) is set, answers with the fault.

    Faults: "throttle" (400 Throttling, in the request's protocol: JSON or rpc-v2-cbor), "503", and "reset"
    (the connection is reset with no reply: AWS, or the emulator, is down). `upstream` may be changed
    while it runs (an emulator restarted on another port).
    """

    def __init__(self, upstream: str) -> None:
        self.set_upstream(upstream)
        self.faults: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = self.path.rsplit("/", 1)[-1] if "/operation/" in self.path else \
                    (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                fault = proxy.faults.get(op) or proxy.faults.get("*")
                if fault == "reset":
                    proxy.hits[op] = proxy.hits.get(op, 0) + 1
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if fault:
                    proxy.hits[op] = proxy.hits.get(op, 0) + 1
                    cbor = "cbor" in (self.headers.get("Content-Type") or "")
                    if fault == "throttle":
                        if cbor:
                            payload = b"\xa2" + _cbor_text("__type") + _cbor_text("Throttling") + \
                                _cbor_text("message") + _cbor_text("Rate exceeded")
                            kind = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
                        else:
                            payload = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()
                            kind = {"Content-Type": self.headers.get("Content-Type") or "application/x-amz-json-1.0"}
                        self._reply(400, payload, {**kind, "x-amzn-query-error": "Throttling;Sender"})
                    else:
                        self._reply(503, b"", {"Content-Type": self.headers.get("Content-Type") or "text/plain"})
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self._reply(resp.status, data, {k: v for k, v in resp.getheaders()
                                                if k.lower() not in ("content-length", "connection",
                                                                     "transfer-encoding")})
                conn.close()

            def _reply(self, status: int, body: bytes, headers: dict) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_upstream(self, url: str) -> None:
        self.upstream = urlparse(url)

    def injected(self) -> int:
        return sum(self.hits.values())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BlackHole:
    """A TCP port that accepts connections and never answers: an unreachable (hanging) AWS region."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self) -> None:
        self.sock.close()


def load_policy() -> set[str]:
    from pathlib import Path
    doc = json.loads((Path(__file__).resolve().parent.parent / "exporters/sagemaker/iam-policy.json").read_text())
    actions: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        acts = statement["Action"]
        actions |= set([acts] if isinstance(acts, str) else acts)
    return actions
