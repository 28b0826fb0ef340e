"""The fake NVML stays a faithful stand-in for the installed pynvml (nvidia-ml-py), and the exporter says so
when the installed pynvml lacks a function it expects."""

from __future__ import annotations

import inspect
import logging
import types

import pynvml
import pytest

import helpers
from mlscope.gpu import fakenvml
from mlscope.gpu.nvml import EXPECTED_FUNCTIONS, warn_missing
from test_gpu import Clock, Rig

FAKE_FUNCTIONS = sorted(name for name, obj in vars(fakenvml).items()
                        if name.startswith("nvml") and inspect.isfunction(obj))


def parameters(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", FAKE_FUNCTIONS)
def test_every_fake_function_has_pynvmls_signature(name):
    real = getattr(pynvml, name, None)
    assert real is not None, f"pynvml has no {name}: the fake invents API"
    assert parameters(getattr(fakenvml, name)) == parameters(real), name


def test_the_fake_covers_every_function_the_exporter_expects_and_so_does_pynvml():
    assert [n for n in EXPECTED_FUNCTIONS if not callable(getattr(fakenvml, n, None))] == []
    assert warn_missing(pynvml) == []  # the pinned nvidia-ml-py has them all
    assert len(FAKE_FUNCTIONS) >= 50  # the parametrized test above really ran over the fake


def test_error_classes_are_pynvmls_own():
    assert fakenvml.NVMLError is pynvml.NVMLError
    assert fakenvml._error("NotSupported") is pynvml.NVMLError_NotSupported
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fakenvml.nvmlDeviceGetUUID(object())


def older_pynvml(*without: str) -> types.ModuleType:
    """The fake NVML as an older nvidia-ml-py would be: some functions absent."""
    module = types.ModuleType("pynvml_old")
    module.__dict__.update({k: v for k, v in vars(fakenvml).items() if k not in without})
    module.__version__ = "11.450"
    return module


def test_a_missing_function_is_named_in_a_warning_and_its_series_left_out(caplog):
    caplog.set_level(logging.WARNING, logger="mlscope.gpu")
    clock = Clock()
    fakenvml.configure(1, clock=clock)
    old = older_pynvml("nvmlDeviceGetTemperatureV", "nvmlDeviceGetRemappedRows")
    try:
        assert warn_missing(old) == ["nvmlDeviceGetTemperatureV", "nvmlDeviceGetRemappedRows"]
        rig = Rig(old, clock)
        try:
            parsed = rig.scrape()
        finally:
            rig.close()
        legacy_calls = fakenvml.call_count("nvmlDeviceGetTemperature")
    finally:
        fakenvml.configure(0)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("has no nvmlDeviceGetTemperatureV" in line and "11.450" in line for line in lines), lines
    assert any("has no nvmlDeviceGetRemappedRows: gpu_remapped_rows left out" in line for line in lines), lines
    assert "gpu_remapped_rows" not in parsed
    assert helpers.value(parsed, "gpu_temperature_celsius", gpu="0") > 0  # from nvmlDeviceGetTemperature
    assert legacy_calls == 1


def test_used_gpu_memory_none_leaves_that_process_out_not_zero():
    clock = Clock()
    fakenvml.configure(1, clock=clock)
    fakenvml.set_values(0, processes=[(4_194_401, "python3", 3 << 30), (4_194_402, "wddm-app", None)])
    try:
        rig = Rig(fakenvml, clock)
        try:
            parsed = rig.scrape()
        finally:
            rig.close()
    finally:
        fakenvml.configure(0)
    procs = {lbl["pid"]: v for lbl, v in parsed["gpu_process_memory_used_bytes"]}
    assert procs == {"4194401": 3 << 30}
    assert helpers.value(parsed, "mlscope_collector_up", collector="gpu") == 1
