"""Prometheus rules (alerts/*.rules.yml): promtool checks and unit tests, and the contracts.

- `promtool check rules` on every rule file, `promtool test rules` on every test file beside it;
- every alert has severity page|ticket, summary, description and a runbook_url built from the
  external label runbook_base whose anchor exists in docs/runbook.md, and is unit-tested both
  firing and quiet;
- thresholds come from the one config file (alerts/config.rules.yml): every mlscope:config series
  read is defined there and every one defined is read; the files load in vmalert too;
- recording rules follow level:metric:operations, and docs/recording-rules.md (what the
  dashboards code against) lists exactly the recorded names.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, require_binary

ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted(ALERTS.glob("*.rules.test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
CATALOGUE = ROOT / "docs" / "recording-rules.md"
RUNBOOK_PREFIX = "{{ $externalLabels.runbook_base }}#"
CONFIG_RULES = ALERTS / "config.rules.yml"
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> list[tuple[Path, dict]]:
    return [(path, rule) for path in RULE_FILES for group in load(path)["groups"]
            for rule in group["rules"] if kind in rule]


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", RUNBOOK.read_text(), re.M)}


def test_rule_files_exist_each_beside_its_test():
    assert {p.name for p in RULE_FILES} >= {"sagemaker.rules.yml", "gpu.rules.yml", "host.rules.yml",
                                           "cost.rules.yml", "stack.rules.yml"}
    for path in RULE_FILES:
        assert path.with_name(path.name.replace(".rules.yml", ".rules.test.yml")).exists(), path


@pytest.mark.integration
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path):
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path):
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "test", "rules", path.name], cwd=ALERTS, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]


def test_test_files_fix_the_group_order():
    """promtool evaluates groups in random order unless told: results would be flaky."""
    for path in TEST_FILES:
        spec = load(path)
        groups = {g["name"] for f in spec["rule_files"] for g in load(ALERTS / f)["groups"]}
        if len(groups) > 1:
            assert set(spec.get("group_eval_order", [])) == groups, path.name


@pytest.mark.parametrize("path,rule", rules("alert"), ids=lambda x: x["alert"] if isinstance(x, dict) else x.name)
def test_alert_contract(path, rule):
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    assert labels.get("severity") in {"page", "ticket"}, rule["alert"]
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: no {key}"
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), url
    assert url.removeprefix(RUNBOOK_PREFIX) == rule["alert"].lower(), url
    assert url.removeprefix(RUNBOOK_PREFIX) in runbook_anchors(), f"{url}: no such section in docs/runbook.md"


def test_every_alert_is_tested_firing_and_quiet():
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for _, rule in rules("alert")}
    assert names - fired == set(), "alerts never tested firing"
    assert names - {"Watchdog"} - quiet == set(), "alerts never tested staying quiet"


def test_recording_rule_names_follow_the_convention():
    for _, rule in rules("record"):
        assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_recording_rule_catalogue_matches_the_rules():
    documented = set()
    for row in CATALOGUE.read_text().splitlines():
        if not row.startswith("| `"):
            continue
        names = re.findall(r"`([a-z][a-z0-9_]*:[a-z0-9_]+:[a-z0-9_]+)`", row)
        documented.update(names)
        # "(also `_rate1h`, `:1d`)" varies the last part of the row's first name
        for suffix in re.findall(r"`([_:][a-z0-9_]+)`", row):
            base = names[0]
            if suffix.startswith(":"):
                documented.add(base.rsplit(":", 1)[0] + suffix)
            else:
                documented.add(re.sub(r"_[a-z]+[0-9]+[a-z]+$", "", base) + suffix)
    recorded = {rule["record"] for _, rule in rules("record")}
    assert documented - recorded == set(), "catalogued but not recorded"
    assert recorded - documented == set(), "recorded but missing from docs/recording-rules.md"


def test_thresholds_come_from_the_one_config_file():
    defined = {rule["record"] for group in load(CONFIG_RULES)["groups"] for rule in group["rules"]}
    assert all(name.startswith("mlscope:config:") for name in defined)
    read: set[str] = set()
    for path in RULE_FILES:
        if path == CONFIG_RULES:
            continue
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                read.update(re.findall(r"mlscope:config:[a-z0-9_]+", rule["expr"]))
                assert "record" not in rule or not rule["record"].startswith("mlscope:config:"), path.name
    assert read - defined == set(), "read but not defined in config.rules.yml"
    assert defined - read == set(), "defined in config.rules.yml but never read"


def test_digit_decoder_is_gone():
    """Numeric tags are gauges now: no rule parses a number out of a tag label."""
    for path in RULE_FILES:
        assert "mlscope_digit" not in path.read_text(), path.name


@pytest.mark.integration
def test_vmalert_loads_every_rule_file(tmp_path):
    """The same files must work in vmalert (MetricsQL): its dry run parses every expression and template."""
    vmalert = require_binary("vmalert")
    args = [vmalert, "-dryRun", "-external.label=runbook_base=https://runbooks.example.com/runbook.md",
            *[f"-rule={path}" for path in RULE_FILES]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
