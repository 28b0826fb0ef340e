"""CloudWatch cross-account observability: the exporter in a monitoring account reads its linked source
accounts' SageMaker metrics (ListMetrics IncludeLinkedAccounts/OwningAccount, GetMetricData AccountId).

Against the emulator (moto + patch 11) over HTTP with real boto3; the clock is injected."""

from __future__ import annotations

import time

import boto3
import pytest
import yaml

from helpers import assert_one_line_error, promtool_check_metrics, run_cli, samples, value
from sagemaker_fixtures import aws_env, moto  # noqa: F401 (autouse: test credentials; one emulator per module)
from sagemaker_fixtures import Clock, base_time, client, create_endpoint, exposition, load_policy, put, summed

from mlscope.demo import patches
from mlscope.health import Health
from mlscope.sagemaker import build, config as sc
from mlscope.sagemaker.linked import LinkedAccounts
from mlscope.settings import Setting, SettingError, resolve

MONITORING = "123456789012"  # the emulator's account for the test credentials
SOURCE_A, SOURCE_B, UNLINKED = "111111111111", "222222222222", "333333333333"


def cfg(**values):
    return resolve([Setting("config", str)] + sc.SETTINGS, {}, environ={
        f"MLSCOPE_{k.upper()}": str(v) for k, v in values.items()})


def test_linked_accounts_setting_parses_and_rejects():
    assert cfg(regions="us-east-1").linked_accounts is False
    assert cfg(regions="us-east-1", linked_accounts="true").linked_accounts is True
    assert cfg(regions="us-east-1", linked_accounts=f"{SOURCE_A}, {SOURCE_B}").linked_accounts == (SOURCE_A, SOURCE_B)
    assert sc.linked_accounts([SOURCE_A, int(SOURCE_B)]) == (SOURCE_A, SOURCE_B)   # YAML numbers
    for bad, needle in [("12345", "12-digit"), (f"{SOURCE_A},{SOURCE_A}", "each once"), ("maybe", "12-digit")]:
        with pytest.raises(SettingError, match=needle) as err:
            cfg(regions="us-east-1", linked_accounts=bad)
        assert "MLSCOPE_LINKED_ACCOUNTS" in str(err.value)
    with pytest.raises(ValueError, match="12-digit"):
        sc.linked_accounts({"a": 1})


def test_targets_mark_the_monitoring_account_and_roles_take_precedence():
    c = cfg(regions="us-east-1,eu-west-1", linked_accounts=SOURCE_A)
    assert [(t.name, t.monitor) for t in sc.targets(c, environ={})] == [
        ("sagemaker/us-east-1", True), ("sagemaker/eu-west-1", True)]
    c.accounts = sc.accounts([{"role_arn": f"arn:aws:iam::{SOURCE_A}:role/r", "regions": ["us-east-1"]}])
    polled = sc.targets(c, environ={})   # with accounts: the ambient credentials are polled too (the monitor)
    assert [(t.name, t.monitor) for t in polled] == [
        ("sagemaker/us-east-1", True), ("sagemaker/eu-west-1", True), (f"sagemaker/{SOURCE_A}/us-east-1", False)]
    assert sc.role_accounts(polled, "us-east-1") == {SOURCE_A} and sc.role_accounts(polled, "eu-west-1") == set()
    linked = sc.linked_target(polled[0], SOURCE_B)
    assert (linked.name, linked.account, linked.linked, linked.role_arn) == (
        f"sagemaker/{SOURCE_B}/us-east-1", SOURCE_B, True, None)
    c.linked_accounts = False
    assert [t.monitor for t in sc.targets(c, environ={})] == [False]   # as before: the role's account only


def test_bad_linked_accounts_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yml"
    for content, needle in [("regions: [us-east-1]\nlinked_accounts: [12345]\n", "12-digit"),
                            ("regions: [us-east-1]\nlinked_accounts: {a: 1}\n", "linked_accounts"),
                            (f"regions: [us-east-1]\nlinked_accounts: ['{SOURCE_A}', '{SOURCE_A}']\n", "each once"),
                            ("accounts: [{role_arn: 'arn:aws:iam::111111111111:role/r', regions: [us-east-1]}]\n"
                             "linked_accounts: true\n", "needs top-level regions")]:
        bad.write_text(content)
        no_region = {"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}
        assert_one_line_error(run_cli("sagemaker-exporter", "--config", str(bad), env=no_region), needle)
    assert_one_line_error(run_cli("sagemaker-exporter", "--regions", "us-east-1", "--linked-accounts", "yes-please"),
                          "--linked-accounts: must be true, false or a list of 12-digit AWS account ids")


# ---------------------------------------------------------------- against the emulator

@pytest.fixture
def aws(moto):
    moto.reset()
    patches.link_accounts(MONITORING, [SOURCE_A, SOURCE_B])
    yield moto.url
    patches.unlink_accounts(MONITORING)


def session(url: str, account: str) -> boto3.Session:
    """Credentials in `account` (the emulator gives AssumeRole credentials the role's account)."""
    creds = client(url, "sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/mlscope",
                                           RoleSessionName="setup")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name="us-east-1")


def put_in(url: str, account: str, endpoint: str, metric: str, ts: float, value: float,
           namespace: str = "AWS/SageMaker") -> None:
    session(url, account).client("cloudwatch", endpoint_url=url).put_metric_data(Namespace=namespace, MetricData=[{
        "MetricName": metric, "Value": value, "Timestamp": ts,
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]}])


def exporter(tmp_path, url: str, **settings):
    """The exporter's own build() from a config file; the test runs the pollers' cycles (no threads)."""
    path = tmp_path / "sagemaker.yml"
    path.write_text(yaml.safe_dump({"regions": ["us-east-1"], "endpoint_url": url, "list_metrics_interval": 600,
                                    "inventory_interval": 300, "delay": 120, "statistics": [], **settings}))
    parts = build(resolve([Setting("config", str)] + sc.SETTINGS, {"config": str(path)}, environ={}), Health())
    return parts, parts.direct[0]


def cycle(collector, clock: Clock, now: float) -> dict[str, bool]:
    """One cycle of every poller (those LinkedAccounts found too) at `now` on the test clock."""
    clock.now = now
    for poller in collector.pollers:
        poller.clock = poller.inventory.clock = clock
    return {poller.account: poller.run_cycle() for poller in collector.pollers}


def text_of(collector) -> str:
    return exposition(*collector.pollers)


@pytest.mark.integration
def test_two_linked_accounts_with_the_same_endpoint_name_are_two_series_with_exact_counts(aws, tmp_path):
    create_endpoint(aws, "own", [("AllTraffic", "ml.m5.xlarge", 1)])          # the monitoring account's own
    base = base_time()
    put(aws, "own", "Invocations", base + 481, 2)
    put_in(aws, SOURCE_A, "shared", "Invocations", base + 481, 4)
    put_in(aws, SOURCE_B, "shared", "Invocations", base + 481, 9)
    put_in(aws, SOURCE_B, "shared", "Invocations", base + 500, 1)
    put_in(aws, UNLINKED, "shared", "Invocations", base + 481, 100)           # not linked: never read
    clock = Clock(base + 600)
    _, collector = exporter(tmp_path, aws, linked_accounts=[SOURCE_A, SOURCE_B])
    assert sorted(p.name for p in collector.pollers) == [
        f"sagemaker/{SOURCE_A}/us-east-1", f"sagemaker/{SOURCE_B}/us-east-1", "sagemaker/us-east-1"]
    assert all(cycle(collector, clock, base + 600).values())                 # first cycle: watermarks only
    assert all(cycle(collector, clock, base + 660).values())                 # counts the period base+480
    text = text_of(collector)
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_A) == 4
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_B) == 10
    assert value(text, "sagemaker_invocations_total", endpoint="own", account=MONITORING) == 2
    assert {l["account"] for l, _ in samples(text)["sagemaker_invocations_total"]} == {SOURCE_A, SOURCE_B, MONITORING}
    for account in (SOURCE_A, SOURCE_B):
        assert value(text, "sagemaker_endpoint_info", endpoint="shared", account=account, status="Unknown",
                     inventory="cloudwatch_link") == 1
        assert value(text, "sagemaker_variant_info", endpoint="shared", account=account,
                     instance_type="unknown") == 1
    # no instance type or count from a linked account without a role: no cost, no instances
    for name in ("sagemaker_variant_hourly_cost_dollars", "sagemaker_variant_instances"):
        assert {l["account"] for l, _ in samples(text)[name]} == {MONITORING}, name
    own_info = [l for l, _ in samples(text)["sagemaker_endpoint_info"] if l["endpoint"] == "own"]
    assert own_info == [{"account": MONITORING, "region": "us-east-1", "endpoint": "own", "status": "InService"}]
    apis = {(l["account"], l["api"]) for l, _ in samples(text)["mlscope_cloudwatch_requests_total"]}
    assert {(SOURCE_A, "GetMetricData"), (SOURCE_A, "ListMetrics")} <= apis
    assert not {api for account, api in apis if account in (SOURCE_A, SOURCE_B)} - {"GetMetricData", "ListMetrics"}
    assert {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics"} <= load_policy()   # no new IAM action
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr

    # B is unlinked: its queries answer Forbidden, counted; its counter keeps its value; nothing crashes
    patches.unlink_accounts(MONITORING, [SOURCE_B])
    put_in(aws, SOURCE_A, "shared", "Invocations", base + 541, 3)
    put_in(aws, SOURCE_B, "shared", "Invocations", base + 541, 5)
    ok = cycle(collector, clock, base + 720)
    assert ok == {MONITORING: True, SOURCE_A: True, SOURCE_B: False}
    text = text_of(collector)
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_A) == 7
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_B) == 10
    assert value(text, "mlscope_cloudwatch_errors_total", account=SOURCE_B, api="GetMetricData",
                 code="Forbidden") >= 1
    assert SOURCE_A not in {l["account"] for l, _ in samples(text).get("mlscope_cloudwatch_errors_total", [])}
    # linked again: the held periods are caught up, nothing lost
    patches.link_accounts(MONITORING, [SOURCE_B])
    assert cycle(collector, clock, base + 780)[SOURCE_B]
    assert value(text_of(collector), "sagemaker_invocations_total", endpoint="shared", account=SOURCE_B) == 15


@pytest.mark.integration
def test_linked_accounts_true_finds_the_source_accounts_and_a_role_wins_for_its_account(aws, tmp_path):
    sm_a = session(aws, SOURCE_A).client("sagemaker", endpoint_url=aws)   # A: a role too, so described and priced
    sm_a.create_model(ModelName="m", ExecutionRoleArn=f"arn:aws:iam::{SOURCE_A}:role/x",
                      PrimaryContainer={"Image": "img"})
    sm_a.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 2}])
    sm_a.create_endpoint(EndpointName="shared", EndpointConfigName="c")
    base = base_time()
    for account, n in ((SOURCE_A, 4), (SOURCE_B, 9), (UNLINKED, 100)):
        put_in(aws, account, "shared", "Invocations", base + 481, n)
    clock = Clock(base + 600)
    parts, collector = exporter(tmp_path, aws, linked_accounts=True,
                                accounts=[{"role_arn": f"arn:aws:iam::{SOURCE_A}:role/mlscope"}])
    fleet = next(s for s in parts.services if isinstance(s, LinkedAccounts))
    assert fleet.discover() == [SOURCE_B]                  # A has a role, the unlinked one is never seen
    assert fleet.discover() == [SOURCE_B] and len(fleet.pollers) == 1   # found again: no second poller
    assert sorted(p.name for p in collector.pollers) == [
        f"sagemaker/{SOURCE_A}/us-east-1", f"sagemaker/{SOURCE_B}/us-east-1", "sagemaker/us-east-1"]
    assert all(cycle(collector, clock, base + 600).values())
    assert all(cycle(collector, clock, base + 660).values())
    text = text_of(collector)
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_A) == 4
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=SOURCE_B) == 9
    assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint="shared", account=SOURCE_A) == \
        pytest.approx(2 * 0.23)
    assert value(text, "sagemaker_endpoint_info", endpoint="shared", account=SOURCE_A, status="InService") == 1
    assert value(text, "sagemaker_endpoint_info", endpoint="shared", account=SOURCE_B, status="Unknown",
                 inventory="cloudwatch_link") == 1
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_exporter_process_finds_linked_accounts_and_serves_their_endpoints(aws, tmp_path):
    """The real process: linked_accounts true, discovery in its own thread, a poller started per account."""
    from helpers import scrape, start_exporter
    from sagemaker_fixtures import CREDS
    now = base_time() + 7200
    for account in (SOURCE_A, UNLINKED):
        put_in(aws, account, "shared", "Invocations", now - 300, 5)
    path = tmp_path / "sagemaker.yml"
    path.write_text(yaml.safe_dump({"regions": ["us-east-1"], "endpoint_url": aws, "poll_interval": "10s",
                                    "statistics": [], "aws_max_attempts": 1, "aws_timeout": "2s",
                                    "linked_accounts": True}))
    proc, base = start_exporter("sagemaker-exporter", "--config", str(path), env=CREDS)
    try:
        collector = f"sagemaker/{SOURCE_A}/us-east-1"
        text = ""
        for _ in range(150):
            text = scrape(base)
            if summed(text, "mlscope_collector_up", collector=collector) == 1 and \
                    samples(text).get("sagemaker_invocations_total"):
                break
            time.sleep(0.2)
        assert value(text, "mlscope_collector_up", collector=collector) == 1, text[-3000:]
        assert value(text, "sagemaker_endpoint_info", account=SOURCE_A, endpoint="shared", status="Unknown",
                     inventory="cloudwatch_link") == 1
        assert value(text, "sagemaker_invocations_total", account=SOURCE_A, endpoint="shared") == 0  # from its start
        assert {l["account"] for l, _ in samples(text)["sagemaker_endpoint_info"]} == {SOURCE_A}
        assert value(text, "mlscope_cloudwatch_requests_total", account=MONITORING, api="ListMetrics") >= 2
        check = promtool_check_metrics(text)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        output = proc.stop()
    assert "Traceback" not in output and f"linked source account {SOURCE_A} found" in output
