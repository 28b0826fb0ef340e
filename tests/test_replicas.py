"""Two replicas of one SageMaker exporter shard (an HA pair, docs/scale.md) are counted once.

Every hand-worked promtool test over raw `sagemaker_*` series (alerts/*.rules.test.yml) is run again
with each such input series exported by two replicas: replica "a" as written, replica "b" started
later with its counters counting from its own first poll (another baseline). The expected recorded
values and alerts stay exactly the single-replica ones: no doubled rate, cost or error ratio, and
every alert fires once, without a `replica` label.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, require_binary

ALERTS = ROOT / "alerts"
# replica "b" starts this many input intervals after replica "a"
LATE_STARTS = (7, 40)
TOKEN = re.compile(r"^(?P<start>[-+]?[\d.e]+|Inf|NaN)(?:(?P<sign>[-+])(?P<step>[\d.e]+))?x(?P<times>\d+)$")
COUNTER = re.compile(r"_(total|count|sum)$")


def expand(values: str) -> list[str]:
    """promtool's expanding notation ('0+600x3 _x2 1 stale') as one value per interval."""
    out: list[str] = []
    for token in str(values).split():
        if token in ("_", "stale"):
            out.append(token)
        elif token.startswith("_x"):
            out += ["_"] * int(token[2:])
        elif m := TOKEN.match(token):
            value, step = float(m["start"]), float(m["step"] or 0) * (-1 if m["sign"] == "-" else 1)
            out.append(repr(value))
            for _ in range(int(m["times"])):
                value += step          # cumulatively, as promtool does
                out.append(repr(value))
        else:
            out.append(repr(float(token)))
    return out


def later_replica(name: str, values: list[str], start: int) -> list[str] | None:
    """Replica b's values: absent before `start`; then the same gauges, and counters that count the
    same increments from 0 at its own first poll. None when a counter resets (replica a restarted:
    b did not, so its increases are not a's)."""
    late = ["_"] * min(start, len(values))
    numbers = [(i, float(v)) for i, v in enumerate(values) if v not in ("_", "stale") and i >= start]
    if not COUNTER.search(name):
        return late + values[start:]
    if any(b < a for (_, a), (_, b) in zip(numbers, numbers[1:])):
        return None
    base = numbers[0][1] if numbers else 0.0
    return late + [v if v in ("_", "stale") else repr(float(v) - base) for v in values[start:]]


def with_replicas(series: str, replica: str) -> str:
    name, _, labels = series.partition("{")
    labels = labels.rstrip("}").strip()
    return f'{name}{{{labels + "," if labels else ""}replica="{replica}"}}'


def two_replica_spec(path: Path, start: int) -> tuple[dict, int]:
    """The test file with every sagemaker_* input exported by two replicas; the number of test groups
    kept (a group whose counters reset is left out)."""
    spec = yaml.safe_load(path.read_text())
    spec["rule_files"] = [str(ALERTS / f) for f in spec["rule_files"]]
    kept = []
    for group in spec["tests"]:
        inputs, doubled = [], False
        for item in group.get("input_series", []):
            if not item["series"].startswith("sagemaker_") or "replica=" in item["series"]:
                inputs.append(item)
                continue
            name = item["series"].partition("{")[0]
            values = expand(item["values"])
            late = later_replica(name, values, start)
            if late is None:
                break
            inputs += [{"series": with_replicas(item["series"], "a"), "values": " ".join(values)},
                       {"series": with_replicas(item["series"], "b"), "values": " ".join(late)}]
            doubled = True
        else:
            if doubled:
                kept.append({**group, "input_series": inputs})
    spec["tests"] = kept
    return spec, len(kept)


SAGEMAKER_TEST_FILES = [p for p in sorted(ALERTS.glob("*.rules.test.yml")) if "'sagemaker_" in p.read_text()]


def test_the_replica_expansion_matches_promtools_notation():
    assert expand("0+600x3 _x2 1.5x1 stale 10-2x2 _") == [
        "0.0", "600.0", "1200.0", "1800.0", "_", "_", "1.5", "1.5", "stale", "10.0", "8.0", "6.0", "_"]
    # b starts at index 2 from 0; a reset in a's counter leaves the group out
    assert later_replica("x_total", ["5.0", "7.0", "9.0", "12.0"], 2) == ["_", "_", "0.0", "3.0"]
    assert later_replica("x_total", ["5.0", "7.0", "0.0", "2.0", "4.0"], 1) is None
    assert later_replica("x_ratio", ["0.5", "0.6", "0.7"], 1) == ["_", "0.6", "0.7"]


@pytest.mark.integration
@pytest.mark.parametrize("start", LATE_STARTS, ids=lambda s: f"b-{s}-intervals-later")
@pytest.mark.parametrize("path", SAGEMAKER_TEST_FILES, ids=lambda p: p.name)
def test_two_replicas_give_the_single_replica_values_and_alerts(path: Path, start: int, tmp_path: Path):
    spec, kept = two_replica_spec(path, start)
    assert kept >= 1, f"{path.name}: no test group over sagemaker_* series left to double"
    doubled = tmp_path / path.name
    doubled.write_text(yaml.safe_dump(spec, sort_keys=False, width=200))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(doubled)], cwd=ALERTS,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
