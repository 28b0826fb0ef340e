"""Sharded scraping: three vmagent shards (`-promscrape.cluster.membersCount=3`) share one fleet of
simulated GPU and host exporters and remote-write into one VictoriaMetrics. No target is lost or
scraped twice; killing one shard loses exactly its share, and the shipped ScrapeTargetMissing rule
names those targets."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, free_port, require_binary

SHARDS = 3
GPU_HOSTS, HOST_MACHINES, GPUS_PER_HOST = 12, 12, 8


def start_fleet(tmp: Path) -> tuple[Process, dict[str, list[str]]]:
    targets_file = tmp / "targets.json"
    fleet = Process([sys.executable, "-m", "bench.fleet", f"--gpu-hosts={GPU_HOSTS}",
                     f"--host-hosts={HOST_MACHINES}", f"--gpus-per-host={GPUS_PER_HOST}",
                     f"--targets-file={targets_file}"], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not targets_file.exists():
        assert fleet.proc.poll() is None and time.monotonic() < deadline, fleet.output()
        time.sleep(0.2)
    return fleet, json.loads(targets_file.read_text())


def vm_query(vm: str, expr: str) -> list[dict]:
    body = requests.get(vm + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def job_instances(result: list[dict]) -> set[tuple[str, str]]:
    return {(r["metric"]["job"], r["metric"]["instance"]) for r in result}


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last[0]:
            return last[1]
        time.sleep(1)
    raise AssertionError(f"{what}: {last[1] if last else None}")


def active_targets(port: int) -> set[tuple[str, str]]:
    body = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()
    return {(t["labels"]["job"], t["labels"]["instance"]) for t in body["data"]["activeTargets"]
            if t["health"] == "up"}


def missing_targets_expr(test_windows: dict[str, str]) -> str:
    """The shipped ScrapeTargetMissing expression, with its look-back windows shortened for a test
    that cannot wait an hour (the shipped windows are covered by alerts/stack.rules.test.yml)."""
    groups = yaml.safe_load((ROOT / "alerts" / "stack.rules.yml").read_text())["groups"]
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "ScrapeTargetMissing"]
    for shipped, short in test_windows.items():
        assert shipped in expr, expr
        expr = expr.replace(shipped, short)
    return expr


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_three_vmagent_shards_split_the_fleet_and_a_killed_shard_loses_only_its_share(tmp_path: Path):
    vm_binary, vmagent_binary = require_binary("victoria-metrics"), require_binary("vmagent")
    procs: list[Process] = []
    try:
        fleet, targets = start_fleet(tmp_path)
        procs.append(fleet)
        fleet_targets = {("gpu", t) for t in targets["gpu"]} | {("host", t) for t in targets["host"]}
        assert len(fleet_targets) == GPU_HOSTS + HOST_MACHINES

        vm_port = free_port()
        vm = f"http://127.0.0.1:{vm_port}"
        procs.append(Process([vm_binary, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                              "-search.latencyOffset=1s", "-retentionPeriod=1"]))
        procs[-1].wait_http(vm + "/health", timeout=30)

        config = tmp_path / "scrape.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addresses}]}
                               for job, addresses in targets.items()]}))
        shard_ports = [free_port() for _ in range(SHARDS)]
        shards = []
        for num, port in enumerate(shard_ports):
            shards.append(Process([vmagent_binary, f"-promscrape.config={config}",
                                   f"-promscrape.cluster.membersCount={SHARDS}", f"-promscrape.cluster.memberNum={num}",
                                   f"-remoteWrite.url={vm}/api/v1/write",
                                   f"-remoteWrite.tmpDataPath={tmp_path / f'q{num}'}",
                                   "-remoteWrite.flushInterval=1s", f"-httpListenAddr=127.0.0.1:{port}"]))
            procs.append(shards[-1])
            shards[-1].wait_http(f"http://127.0.0.1:{port}/health", timeout=30)

        # every target is scraped by exactly one shard, and every shard has a share
        def shares_settled():
            shares = [active_targets(port) for port in shard_ports]
            return sum(map(len, shares)) == len(fleet_targets), shares
        shares = wait_until(shares_settled, 60, "shards' healthy targets")
        assert set().union(*shares) == fleet_targets
        assert all(len(share) > 0 for share in shares), [len(s) for s in shares]
        for i in range(SHARDS):
            for j in range(i + 1, SHARDS):
                assert shares[i] & shares[j] == set(), f"shards {i} and {j} both scrape {shares[i] & shares[j]}"

        # the store holds every target once: up == 1 for each, and each GPU host's 8 GPUs
        wait_until(lambda: (len(r := vm_query(vm, "up == 1")) == len(fleet_targets), len(r)), 60, "up series in VM")
        assert job_instances(vm_query(vm, "up")) == fleet_targets
        gpus = wait_until(lambda: (len(r := vm_query(vm, "gpu_utilization_ratio")) == GPU_HOSTS * GPUS_PER_HOST,
                                   len(r)), 30, "GPU series in VM")
        assert gpus == GPU_HOSTS * GPUS_PER_HOST
        assert job_instances(vm_query(vm, "node_load1")) == {t for t in fleet_targets if t[0] == "host"}

        # a crash (SIGKILL: no staleness markers) of shard 1 stops exactly its share; the others carry on
        killed = shares[1]
        shards[1].proc.send_signal(signal.SIGKILL)
        shards[1].proc.wait(10)
        time.sleep(10)
        fresh = job_instances(vm_query(vm, "max by (job, instance) (max_over_time(up[6s]))"))
        assert fresh == fleet_targets - killed
        assert job_instances(vm_query(vm, "max by (job, instance) (max_over_time(up[1m]))")) == fleet_targets

        # the alert rule names the killed shard's targets, and only those
        expr = missing_targets_expr({"[1h]": "[1m]", "[5m]": "[6s]"})
        assert job_instances(vm_query(vm, expr)) == killed
    finally:
        for proc in reversed(procs):
            proc.stop()
