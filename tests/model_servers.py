"""Real model servers from PyPI on the CPU, each in its own venv under .venv-models/ (they pin torch and
friends that must not enter the main venv), serving a tiny model the test writes itself.

`model_venv(name)` builds .venv-models/<name> from tests/models/<name>-requirements.txt once (a stamp
file remembers which requirements it was built from). Without it the tests skip locally and FAIL in
CI (CI=true), like require_binary.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, Prometheus, free_port

SHIPPED = yaml.safe_load((ROOT / "provisioning" / "prometheus" / "prometheus.yml").read_text())
VENVS = ROOT / ".venv-models"
REQUIREMENTS = ROOT / "tests" / "models"


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def model_venv(name: str) -> Path:
    """The bin/ directory of .venv-models/<name>, built from its pinned requirements if needed."""
    req = REQUIREMENTS / f"{name}-requirements.txt"
    venv = VENVS / name
    stamp = venv / ".installed-stamp"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv / "bin"
    steps = (["python3", "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "-q", "-r", str(req)])
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=1500, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            _unavailable(f"cannot build {venv}: {' '.join(step[:3])}: {result.stderr.strip()[-500:]}")
    stamp.write_text(digest)
    return venv / "bin"


class Server(Process):
    """A model server process group: stop() ends the server and every worker it spawned."""

    def stop(self, timeout: float = 20) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # workers that outlived their parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.output()


def shipped_job(name: str, target: str, **labels: str) -> dict:
    """The shipped scrape job `name` (its relabelling), with one static target scraped every second."""
    job = next(j for j in SHIPPED["scrape_configs"] if j["job_name"] == name)
    job = {k: v for k, v in job.items() if not k.endswith("_sd_configs")}
    return {**job, "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [target], "labels": labels}]}


def one(prom: Prometheus, expr: str) -> float:
    result = prom.query(expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


def wait_until(check, timeout: float, what: str, output=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} not ready after {timeout}s:\n{output()[-4000:]}")


# -- TorchServe -------------------------------------------------------------------------------------

TORCHSERVE_HANDLER = '''
import json
import torch
from ts.torch_handler.base_handler import BaseHandler


class Tiny(BaseHandler):
    """y = W x with W all 0.5: a 4 -> 2 linear layer, built here (no download)."""

    def initialize(self, context):
        self.model = torch.nn.Linear(4, 2)
        with torch.no_grad():
            self.model.weight.fill_(0.5)
            self.model.bias.zero_()
        self.initialized = True

    def preprocess(self, data):
        rows = []
        for item in data:
            body = item.get("body") or item.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(body["x"])
        return torch.tensor(rows, dtype=torch.float32)

    def inference(self, x):
        with torch.no_grad():
            return self.model(x)

    def postprocess(self, y):
        return y.tolist()
'''


class TorchServe:
    """TorchServe 0.12 (Java frontend + Python worker) serving the tiny model `tiny`, batch size 4."""

    def __init__(self, tmp: Path, model: str = "tiny", batch_size: int = 4):
        bin_dir = model_venv("torchserve")
        java = subprocess.run(["which", "java"], capture_output=True, text=True).stdout.strip()
        if not java:
            _unavailable("java not found on PATH; install it with: apt-get install -y default-jre-headless")
        self.model = model
        store = tmp / "model-store"
        store.mkdir(parents=True)
        (tmp / "handler.py").write_text(TORCHSERVE_HANDLER)
        subprocess.run([str(bin_dir / "torch-model-archiver"), "--model-name", model, "--version", "1.0",
                        "--handler", str(tmp / "handler.py"), "--export-path", str(store)],
                       check=True, capture_output=True, timeout=120)
        self.inference, self.management, self.metrics = free_port(), free_port(), free_port()
        models = {model: {"1.0": {"defaultVersion": True, "marName": f"{model}.mar", "minWorkers": 1,
                                   "maxWorkers": 1, "batchSize": batch_size, "maxBatchDelay": 50}}}
        config = tmp / "config.properties"
        config.write_text(textwrap.dedent(f"""\
            inference_address=http://127.0.0.1:{self.inference}
            management_address=http://127.0.0.1:{self.management}
            metrics_address=http://127.0.0.1:{self.metrics}
            metrics_mode=prometheus
            default_workers_per_model=1
            models={yaml.safe_dump(models, default_flow_style=True, width=10_000).strip()}
            """).replace("'", '"'))
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG_LOCATION": str(tmp / "logs"),
               "METRICS_LOCATION": str(tmp / "logs")}
        self.process = Server([str(bin_dir / "torchserve"), "--start", "--foreground", "--ts-config", str(config),
                               "--model-store", str(store), "--models", f"{model}.mar", "--ncs",
                               "--disable-token-auth"], env=env, cwd=tmp)
        url = f"http://127.0.0.1:{self.management}/models/{model}"
        wait_until(lambda: '"status": "READY"' in requests.get(url, timeout=2).text, 180,
                   "TorchServe model", self.process.output)

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics}"

    def predict(self, x: list[float]) -> list[float]:
        resp = requests.post(f"http://127.0.0.1:{self.inference}/predictions/{self.model}", json={"x": x}, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> str:
        return self.process.stop()


# -- MLServer ---------------------------------------------------------------------------------------

MLSERVER_RUNTIME = '''
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Doubler(MLModel):
    """y = 2x; a negative input is a server-side failure (HTTP 500), to count errors."""

    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        if (x < 0).any():
            raise RuntimeError("negative input")
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", x * 2)])
'''


class MLServer:
    """Seldon MLServer 1.7 serving the tiny model `doubler` through its V2 REST API."""

    def __init__(self, tmp: Path, model: str = "doubler"):
        bin_dir = model_venv("mlserver")
        self.model = model
        folder = tmp / model
        folder.mkdir(parents=True)
        (folder / "runtime.py").write_text(MLSERVER_RUNTIME)
        (folder / "model-settings.json").write_text(
            f'{{"name": "{model}", "implementation": "runtime.Doubler"}}')
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        (tmp / "settings.json").write_text(
            f'{{"host": "127.0.0.1", "http_port": {self.http}, "grpc_port": {self.grpc}, '
            f'"metrics_port": {self.metrics}, "parallel_workers": 0}}')
        self.process = Server([str(bin_dir / "mlserver"), "start", str(tmp)], cwd=tmp,
                              env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        url = f"http://127.0.0.1:{self.http}/v2/models/{model}/ready"
        wait_until(lambda: requests.get(url, timeout=2).status_code == 200, 120, "MLServer model",
                   self.process.output)

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics}"

    def infer(self, x: list[float]) -> requests.Response:
        body = {"inputs": [{"name": "x", "shape": [1, len(x)], "datatype": "FP32", "data": x}]}
        return requests.post(f"http://127.0.0.1:{self.http}/v2/models/{self.model}/infer", json=body, timeout=60)

    def stop(self) -> str:
        return self.process.stop()
