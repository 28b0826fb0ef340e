"""`make faults` (`python -m bench faults`): inject the failures production sees and count what they cost.

Each scenario injects faults into real parts and counts: faults injected, crashes (an exporter process
that died or printed a traceback, or an exception out of a poll cycle), lost counter increments
(known increments in, counters out) and pages lost (an alert that fired and never reached on-call).
Every count but the first must be 0.

- AWS: the SageMaker poller (the exporter's own code, with a test clock so CloudWatch periods settle at
  once) behind a fault proxy in front of the moto emulator: throttling, 503s, connection resets (AWS
  down), then the emulator restarted empty on another port.
- NVML: the GPU exporter as a real process on the fake NVML, steered through its control file: no
  driver at start, a GPU falling off the bus, functions failing, Xid events during all that.
- Prometheus restart: the real Prometheus scraping a real exporter, stopped cleanly and killed (-9);
  every sample written before each stop must still be there after the restart.
- Alertmanager down while an alert fires: the page must arrive once Alertmanager is back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests
import yaml

from helpers import Process, Prometheus, WebhookReceiver, free_port, samples, scrape, start_exporter


@dataclass
class Row:
    scenario: str
    faults: int = 0
    crashes: int = 0
    lost_increments: int = 0
    pages_lost: int = 0
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.crashes == 0 and self.lost_increments == 0 and self.pages_lost == 0


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(f"{what} not seen within {timeout:g}s")


# ---- AWS: throttling, 5xx, outage, emulator restart ----

def aws_faults(short: bool) -> list[Row]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    from sagemaker_fixtures import Clock, FaultProxy, Moto, base_time, create_endpoint, exposition, make_poller, put

    from helpers import value

    logging.getLogger("mlscope.sagemaker").setLevel(logging.CRITICAL)  # the failures are the point here

    emulator = Moto()
    proxy = FaultProxy(emulator.url)
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(proxy.url, clock, max_attempts=1, timeout=2)
    crashes, expected, minute = 0, 0, 8

    def cycle(fault: str | None, invocations: int | None) -> None:
        """One poll minute: traffic in the period that settles now, the fault active while polling."""
        nonlocal crashes, expected, minute
        if invocations:
            put(emulator.url, "ep", "Invocations", base + minute * 60 + 1, invocations)
            expected += invocations
        proxy.faults.clear()
        if fault:
            proxy.faults["*" if fault == "reset" else "GetMetricData"] = fault
        clock.now += 60
        minute += 1
        try:
            poller.run_cycle()
        except Exception:  # the poller promises never to raise
            crashes += 1

    def counted() -> int:
        return int(value(exposition(poller), "sagemaker_invocations_total", endpoint="ep"))

    try:
        create_endpoint(emulator.url, "ep")
        poller.run_cycle()  # sets the watermarks
        plan = ["throttle", None, "503", "throttle", "reset", "reset", None, "throttle", "503", None]
        for i, fault in enumerate(plan[:6] if short else plan):
            cycle(fault, invocations=i + 1)
        for _ in range(2):
            cycle(None, None)  # catch up
        outage = Row("aws: throttling, 5xx, AWS down", proxy.injected(), crashes, expected - counted(),
                     note=f"{expected} invocations in, {counted()} counted")

        before_restart, faults_before = expected, proxy.injected()
        cycle("reset", None)  # the emulator goes down ...
        replacement = Moto()  # ... and comes back empty, on another port
        emulator.stop()
        emulator = replacement
        proxy.set_upstream(emulator.url)
        create_endpoint(emulator.url, "ep")
        for i in range(2 if short else 4):
            cycle(None, invocations=10 + i)
        cycle(None, None)
        restart = Row("aws: emulator restarted empty", proxy.injected() - faults_before + 1, crashes,
                      expected - counted(),
                      note=f"{before_restart} before + {expected - before_restart} after, {counted()} counted")
        return [outage, restart]
    finally:
        proxy.stop()
        emulator.stop()


# ---- NVML: errors, a lost GPU, Xid events ----

def nvml_faults(short: bool) -> Row:
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-faults-"))
    control = tmp / "control.json"

    def steer(**data) -> None:
        (tmp / "control.tmp").write_text(json.dumps(data))
        os.replace(tmp / "control.tmp", control)

    steer(faults=["nvmlInit=LibraryNotFound"])
    env = {"MLSCOPE_NVML_MODULE": "mlscope.gpu.fakenvml", "MLSCOPE_FAKENVML_GPUS": "3",
           "MLSCOPE_FAKENVML_CONTROL": str(control), "MLSCOPE_RETRY_INTERVAL": "0.2"}
    proc, base = start_exporter("gpu-exporter", env=env)
    injected, xids, energy, decreases = 1, [], {}, 0

    def parsed() -> dict:
        nonlocal decreases
        got = samples(scrape(base))
        for labels, v in got.get("gpu_energy_consumed_joules_total", []):
            if v < energy.get(labels["gpu"], 0):
                decreases += 1
            energy[labels["gpu"]] = v
        return got

    def gpu_up(p: dict) -> dict:
        return {labels["gpu"]: v for labels, v in p.get("gpu_up", [])}

    def xid_total(p: dict) -> float:
        return sum(v for _, v in p.get("gpu_xid_errors_total", []))

    try:
        steer(faults=[])  # the driver appears
        wait_until(lambda: gpu_up(p := parsed()) == {"0": 1, "1": 1, "2": 1}
                   and {l["collector"]: v for l, v in p["mlscope_collector_up"]}.get("xid") == 1,
                   20, "three GPUs up with Xid events registered")
        # (faults, Xid events so far, gpu_up expected): a failing GPU serves only gpu_info and gpu_up 0, so its
        # Xid counter shows again (with what arrived meanwhile) once it is back
        all_up, lost = {"0": 1, "1": 1, "2": 1}, {"0": 1, "1": 0, "2": 1}
        steps = [(["1:*=GpuIsLost"], [[0, 79]], lost),
                 (["1:*=GpuIsLost", "2:nvmlDeviceGetPowerUsage=Unknown", "0:nvmlDeviceGetTemperature=Unknown"],
                  [[0, 79], [2, 48]], {"1": 0}),
                 ([], [[0, 79], [2, 48], [0, 63]], all_up)]
        if not short:
            steps += [(["nvmlDeviceGetUtilizationRates=Unknown"], [[0, 79], [2, 48], [0, 63], [1, 79]],
                       {"0": 0, "1": 0, "2": 0}),
                      ([], [[0, 79], [2, 48], [0, 63], [1, 79], [2, 79]], all_up)]
        previous_faults, previous_xids = set(), 0
        for faults, xids, want in steps:  # every new fault and every new Xid event counts as one injected
            injected += len(set(faults) - previous_faults) + len(xids) - previous_xids
            previous_faults, previous_xids = set(faults), len(xids)
            steer(faults=faults, xid=xids)
            try:
                wait_until(lambda: want.items() <= gpu_up(p := parsed()).items()
                           and (want != all_up or xid_total(p) >= len(xids)),
                           20, f"faults {faults} and {len(xids)} Xid events")
            except TimeoutError:
                pass  # what never showed up is counted below as lost
        final = parsed()
        lost_xids = len(xids) - int(xid_total(final))
    finally:
        out = proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    crashes = int(proc.proc.returncode not in (0, None)) + out.count("Traceback")
    return Row("nvml: no driver, GPU lost, errors, Xid", injected, crashes, lost_xids + decreases,
               note=f"{len(xids)} Xid events sent, {int(xid_total(final))} counted; energy decreases: {decreases}")


# ---- Prometheus restarts ----

def prometheus_restart(short: bool) -> Row:
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-faults-"))
    exporter, base = start_exporter("host-exporter")
    target = base.removeprefix("http://")
    prom = Prometheus({"global": {"scrape_interval": "1s"},
                       "scrape_configs": [{"job_name": "host", "scrape_interval": "1s",
                                           "static_configs": [{"targets": [target]}]}]}, tmp)
    started, lost, restarts = time.time(), 0, 0

    def stored_samples(at: float) -> int:
        resp = requests.get(prom.url + "/api/v1/query", timeout=10,
                            params={"query": f'count_over_time(up{{job="host"}}[{int(at - started) + 5}s])',
                                    "time": f"{at:.3f}"})
        result = resp.json()["data"]["result"]
        return int(result[0]["value"][1]) if result else 0

    try:
        for kill in ([False] if short else [False, True]):
            time.sleep(4)
            stop_at = time.time() - 1.5  # samples older than this are committed to the WAL
            before = stored_samples(stop_at)
            if kill:
                prom.process.proc.kill()
                prom.process.proc.wait()
            else:
                prom.stop()
            restarts += 1
            prom.start()
            after = stored_samples(stop_at)
            lost += max(0, before - after)
        wait_until(lambda: stored_samples(time.time()) > 0, 10, "scrapes after the restart")
    finally:
        prom.stop()
        out = exporter.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    crashes = out.count("Traceback")
    return Row("prometheus: restart" + ("" if short else " and kill -9"), restarts, crashes, lost,
               note="samples written before each stop, missing after it")


# ---- Alertmanager down while an alert fires ----

def alertmanager_down(short: bool) -> Row:
    binaries = [shutil.which(b) for b in ("prometheus", "prometheus-alertmanager")]
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-faults-"))
    receiver = WebhookReceiver()
    logging.getLogger("mlscope.demo.oncall").setLevel(logging.ERROR)  # the table says it arrived
    am_port = free_port()
    am_config = tmp / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump({
        "route": {"receiver": "page", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "page", "webhook_configs": [{"url": receiver.url + "/page"}]}]}))
    rules = tmp / "faults.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "faults", "interval": "1s", "rules": [
        {"alert": "FaultSuitePage", "expr": "vector(1)", "labels": {"severity": "page"},
         "annotations": {"summary": "fires from the start"}}]}]}))
    prom = Prometheus({"global": {"evaluation_interval": "1s"},
                       "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}},
                      tmp, rule_files=[rules], extra_args=["--rules.alert.resend-delay=1s"])
    am = None

    def failed_sends() -> float:
        text = requests.get(prom.url + "/metrics", timeout=10).text
        return sum(v for name, series in samples(text).items() if name in (
            "prometheus_notifications_errors_total", "prometheus_notifications_dropped_total") for _, v in series)

    try:
        wait_until(lambda: prom.query('ALERTS{alertname="FaultSuitePage",alertstate="firing"}'), 20,
                   "the alert firing")
        wait_until(lambda: failed_sends() >= (1 if short else 3), 20, "Prometheus failing to reach Alertmanager")
        faults = int(failed_sends())
        am = Process([binaries[1], f"--config.file={am_config}", f"--storage.path={tmp / 'am'}",
                      f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="])
        back = time.monotonic()
        try:
            receiver.wait_for("FaultSuitePage", timeout=30, path="/page")
            pages_lost, note = 0, f"page arrived {time.monotonic() - back:.1f}s after Alertmanager started"
        except AssertionError:
            pages_lost, note = 1, "the page never arrived"
    finally:
        if am is not None:
            am.stop()
        prom.stop()
        receiver.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return Row("alertmanager down while an alert fires", faults, 0, 0, pages_lost,
               note=f"{faults} failed sends; {note}")


SCENARIOS = [aws_faults, nvml_faults, prometheus_restart, alertmanager_down]
NEEDS = {prometheus_restart: ["prometheus"], alertmanager_down: ["prometheus", "prometheus-alertmanager"]}


def run(short: bool = False) -> list[Row]:
    rows: list[Row] = []
    for scenario in SCENARIOS:
        missing = [b for b in NEEDS.get(scenario, []) if not shutil.which(b)]
        if missing:
            rows.append(Row(scenario.__name__, note=f"not run: {', '.join(missing)} not on PATH"))
            continue
        result = scenario(short)
        rows += result if isinstance(result, list) else [result]
    return rows


def table(rows: list[Row]) -> str:
    header = f"{'scenario':<42} {'faults':>6} {'crashes':>7} {'lost incr.':>10} {'pages lost':>10}  note"
    lines = [header, "-" * len(header)]
    lines += [f"{r.scenario:<42} {r.faults:>6} {r.crashes:>7} {r.lost_increments:>10} {r.pages_lost:>10}  {r.note}"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    short = "--short" in (argv if argv is not None else sys.argv[1:])
    rows = run(short)
    print(table(rows), flush=True)
    return 0 if all(r.clean for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
