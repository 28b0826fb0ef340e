"""The rightsizer's pure parts: statistics, knee, sizing, the query client's errors and headers, the
instance catalogue and `mlscope prices refresh` (botocore Stubber, as tests/test_prices.py)."""

from __future__ import annotations

import datetime as dt
from array import array
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.stub import Stubber

from mlscope import prices
from mlscope.prices import CATALOGUE, CatalogueRow, PriceTableError, load_catalogue, parse_catalogue
from mlscope.rightsize.analysis import knee, percentile, summary
from mlscope.rightsize.catalogue import Catalogue
from mlscope.rightsize.cli import timestamp
from mlscope.rightsize.findings import recommend
from mlscope.rightsize.policy import Policy
from mlscope.rightsize.history import History, _query, ENDPOINT_RANGE
from mlscope.rightsize.query import Auth, PromQL, RightsizeError
from test_prices import product

def test_percentile_is_linear_between_ranks():
    values = [float(v) for v in range(1, 201)]  # 1..200
    assert percentile(values, 50) == 100.5
    assert percentile(values, 99.5) == pytest.approx(199.005)
    assert percentile(values, 100) == 200 and percentile([], 50) != percentile([], 50)  # NaN
    assert summary([0.1, 0.2, 0.3, 0.4]) == {"p50": 0.25, "p95": 0.385, "p99": 0.397, "max": 0.4}


def test_knee_is_the_lower_edge_of_the_first_slow_bin():
    xs = [i / 10 for i in range(1, 401)]  # 0.1 .. 40 req/s per instance, evenly
    lat = [0.1 if x <= 30 else 0.1 + (x - 30) * 0.1 for x in xs]
    k = knee(xs, lat, factor=1.5)
    # bins of 40/20 = 2 req/s; [30, 32) has median x 31 -> latency 0.2 > 0.15: knee at 30.
    assert k.reached and k.sustainable_rate == pytest.approx(30.0) and k.baseline_latency == 0.1


def test_slow_windows_at_the_lowest_load_are_no_knee():
    xs = [i / 10 for i in range(1, 401)]
    lat = [0.5 if x < 1.5 else 0.1 for x in xs]  # cold starts below 1.5 req/s, flat above
    assert not knee(xs, lat, factor=1.5).reached


def test_no_knee_when_latency_stays_flat_and_one_outlier_is_not_a_knee():
    xs = [i / 10 for i in range(1, 401)]
    lat = [0.1] * 400
    lat[5] = 5.0  # one slow window at low load
    k = knee(xs, lat, factor=1.5)
    assert not k.reached and k.sustainable_rate is None


def history(**series_values) -> History:
    h = History("sagemaker_variant", {"region": "us-east-1", "endpoint": "e", "variant": "v"}, "us-east-1",
                "ml.c5.xlarge", instances_now=2, hourly_cost=0.408)
    percentiles = Policy().percentiles()
    for name, values in series_values.items():
        h.add(name, array("f", values), percentiles.get(name, 100.0))
    return h


def test_underprovisioning_wins_over_overprovisioning():
    n = 12 * 40  # 40 hours
    rec = recommend(history(cpu=[0.95] * n, memory=[0.1] * n, instances=[2] * n), Catalogue.load(), Policy())
    assert rec["finding"] == "Underprovisioned"
    assert rec["reasons"] == ["CPUUnderprovisioned", "MemoryOverprovisioned"]
    assert rec["confidence"] == "low" and rec["history_hours"] == 40.0
    # 0.95 x 4 x 2 = 7.6 vCPUs / 0.8333 = 9.12 vCPUs; memory 0.8 GiB fits anything: 5 x c5.large (2 vCPUs,
    # 0.102 $/h) = 0.51 $/h beats 3 x c5.xlarge (0.612 $/h).
    best = rec["options"][0]
    assert (best["instance_type"], best["instances"], best["hourly_cost_dollars"]) == ("ml.c5.large", 5, 0.51)


def test_overprovisioned_needs_real_savings():
    n = 12 * 80
    # Memory 30 % (x 1.2 = 0.36 < 0.5) is over-provisioned, but CPU 70 % of 2 x 4 vCPUs (5.6) needs 4 x c5.large
    # to go smaller: the same 0.408 $/h. No option saves 10 %, so it stays Optimized (not churned).
    rec = recommend(history(cpu=[0.7] * n, memory=[0.3] * n, instances=[2] * n), Catalogue.load(), Policy())
    assert rec["reasons"] == ["MemoryOverprovisioned"] and rec["finding"] == "Optimized"
    assert rec["options"][0]["estimated_monthly_savings_dollars"] == 0.0
    assert rec["confidence"] == "medium" and rec["estimated_monthly_savings_dollars"] == 0.0


def test_5xx_only_at_peak_is_a_throughput_shortage():
    n = 12 * 40
    rates = [10.0 + 30.0 * (i % 20) / 19 for i in range(n)]  # 10 .. 40 req/s, evenly
    errors = [r * 0.05 if r > 38 else 0.0 for r in rates]  # 5 % fail in the busiest windows only
    h = history(cpu=[0.5] * n, memory=[0.5] * n, instances=[2] * n, requests=rates, errors_5xx=errors)
    rec = recommend(h, Catalogue.load(), Policy())
    assert rec["finding"] == "Underprovisioned" and rec["reasons"] == ["ThroughputUnderprovisioned"]
    h.traffic["errors_5xx"] = array("f", [0.001 * r for r in rates])  # 0.1 % everywhere: not capacity
    assert recommend(h, Catalogue.load(), Policy())["finding"] == "Optimized"


def test_host_without_cost_series_says_why_it_has_no_options():
    h = History("host", {"instance": "gpu-7"}, "us-east-1")
    h.add("cpu", array("f", [0.5] * 12 * 40), 99.5)
    rec = recommend(h, Catalogue.load(), Policy())
    assert rec["options"] == [] and rec["current"] == {"instance_type": None, "instances": 1,
                                                       "hourly_cost_dollars": None}
    assert rec["message"].startswith("no mlscope_host_hourly_cost_dollars series")


def test_profiles_and_overrides():
    assert Policy().target == pytest.approx(1 / 1.2)
    assert Policy(profile="cost").cpu_percentile == 95.0
    assert Policy(profile="performance", headroom=0.5).headroom == 0.5  # a setting beats the profile


def test_queries_are_one_per_metric_with_anchored_filters():
    text = _query(ENDPOINT_RANGE["latency_p99"], "account, region, endpoint, variant", "endpoint=~`a.*`")
    assert text == 'max_over_time(sagemaker_model_latency_seconds{quantile="0.99",endpoint=~`a.*`}[300s])'
    assert _query(ENDPOINT_RANGE["cpu"], "region", "") == "max_over_time(sagemaker_instance_cpu_utilization_ratio{}[300s])"


@pytest.mark.parametrize("raw, expected", [("1793491200", 1793491200.0), ("2026-11-01T00:00:00Z", 1793491200.0),
                                           ("2026-11-01T01:00:00+01:00", 1793491200.0)])
def test_at_accepts_rfc3339_and_unix_seconds(raw, expected):
    assert timestamp(raw) == expected


class Recorder:
    """An HTTP server on 127.0.0.1 that answers every request with a fixed status and body and records the
    Authorization header: it checks what the client sends, not Prometheus's behaviour."""

    def __init__(self, status: int, body: bytes):
        headers: list = []
        self.headers = headers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers.append(self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_bearer_token_is_sent_and_non_json_is_one_line():
    rec = Recorder(200, b"<html>login</html>")
    try:
        client = PromQL(rec.url, auth=Auth(bearer_token="tok-123"))
        with pytest.raises(RightsizeError, match="did not answer JSON"):
            client.instant("up", 0)
        assert rec.headers == ["Bearer tok-123"] and client.queries == 1
    finally:
        rec.close()


def test_server_side_timeout_is_reported():
    body = json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"})
    rec = Recorder(503, body.encode())
    try:
        with pytest.raises(RightsizeError, match="timed out on the server"):
            PromQL(rec.url).range("up", 0, 600, 300)
    finally:
        rec.close()


def test_a_bad_ca_file_is_one_line(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(RightsizeError, match="--ca-file"):
        PromQL("https://127.0.0.1:1", auth=Auth(ca_file=str(bad)))


def test_shipped_catalogue_is_complete_and_dated():
    comments, rows = parse_catalogue(CATALOGUE.read_text())
    assert any("Compiled 2026-11-30" in c for c in comments) and any("prices refresh --region" in c for c in comments)
    cat = Catalogue(rows)
    p3 = cat.get("p3.8xlarge", "us-east-1")
    assert (p3.vcpu, p3.memory_gib, p3.gpu, p3.gpu_model, p3.gpu_memory_gib, p3.usd_per_hour) == \
        (32, 244, 4, "V100", 16, 12.24)
    assert cat.get("ml.g6.xlarge", "us-east-1").gpu_model == "L4"
    # Every GPU row names its GPU and its memory (the exporters read the same rows: tests/test_prices.py).
    assert all(r.gpu_model and r.gpu_memory_gib > 0 for r in rows if r.gpu)
    assert all(r.usd_per_hour > 0 and r.vcpu > 0 and r.memory_gib > 0 for r in rows)


def test_catalogue_overrides_and_bad_files(tmp_path):
    cat = Catalogue.load(overrides={"g4dn.xlarge": 0.3, "g5.xlarge": {"us-west-2": 0.9}})
    assert cat.get("g4dn.xlarge", "eu-west-1").usd_per_hour == 0.3
    assert cat.get("g5.xlarge", "us-west-2").usd_per_hour == 0.9
    assert cat.get("g5.xlarge", "us-east-1").usd_per_hour == 1.006
    # A row without its specs (the Price List API left them out) is no candidate and no crash.
    assert Catalogue([CatalogueRow("x9.large", "us-east-1", 0, 0, 0, "", 0, 0.1)]).get("x9.large", "us-east-1") is None
    broken = tmp_path / "c.csv"
    broken.write_text("instance_type,region,vcpu,memory_gib,gpu,gpu_model,gpu_memory_gib,usd_per_hour\nx,r,4,16\n")
    with pytest.raises(PriceTableError, match="line 2: expected 8 fields"):
        load_catalogue(broken)


def ec2_product(instance: str, usd: str, vcpu: str, memory: str, gpu: str | None = None,
                gpu_memory: str | None = None) -> str:
    attrs = {"instanceType": instance, "vcpu": vcpu, "memory": memory, "regionCode": "us-east-1",
             "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
             "usagetype": f"BoxUsage:{instance}"}
    if gpu is not None:
        attrs["gpu"] = gpu
    if gpu_memory is not None:
        attrs["gpuMemory"] = gpu_memory
    return json.dumps({"product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": "S" + instance},
                       "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {
                           "unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}}})


def test_prices_refresh_catalogue_learns_the_spec_columns(tmp_path):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
            product("ml.g5.xlarge", "1.5000", vcpu="4", gpu="1", memory="16 GiB")]},
            {"ServiceCode": "AmazonSageMaker", "Filters": prices.product_filters("us-east-1"),
             "FormatVersion": "aws_v1", "MaxResults": 100})
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
            ec2_product("g7.xlarge", "0.9000", "4", "32 GiB", gpu="2", gpu_memory="48 GiB"),
            ec2_product("p3.8xlarge", "11.0000", "32", "244 GiB", gpu="4")]},  # no gpuMemory: kept
            {"ServiceCode": "AmazonEC2", "Filters": prices.ec2_filters("us-east-1"), "FormatVersion": "aws_v1",
             "MaxResults": 100})
        out = tmp_path / "catalogue.csv"
        out.write_text(CATALOGUE.read_text())
        assert prices.refresh_catalogue(client, "us-east-1", out, today=dt.date(2026, 12, 1)) == 3
        stub.assert_no_pending_responses()
    comments, rows = parse_catalogue(out.read_text())
    assert any("us-east-1: refreshed from the AWS Price List API on 2026-12-01 (3 instance types)" in c
               for c in comments)
    east = {r.instance_type: r for r in rows if r.region == "us-east-1"}
    assert east["g7.xlarge"] == CatalogueRow("g7.xlarge", "us-east-1", 4, 32, 2, "", 24, 0.9)
    assert east["p3.8xlarge"] == CatalogueRow("p3.8xlarge", "us-east-1", 32, 244, 4, "V100", 16, 11.0)
    assert east["ml.g5.xlarge"].gpu_model == "A10G" and east["ml.g5.xlarge"].usd_per_hour == 1.5
    assert len(east) == 3  # the region's rows are replaced
    assert Catalogue(rows).get("g5.xlarge", "us-west-2").usd_per_hour == 1.006  # other regions kept


def test_prices_refresh_catalogue_command(monkeypatch, tmp_path, capsys):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []},
                      {"ServiceCode": "AmazonSageMaker", "Filters": prices.product_filters("us-east-1"),
                       "FormatVersion": "aws_v1", "MaxResults": 100})
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
        ec2_product("c7i.large", "0.0893", "2", "4 GiB")]},
        {"ServiceCode": "AmazonEC2", "Filters": prices.ec2_filters("us-east-1"), "FormatVersion": "aws_v1",
         "MaxResults": 100})
    stub.activate()
    monkeypatch.setattr(prices, "make_client", lambda endpoint_url=None: client)
    out = tmp_path / "catalogue.csv"
    assert prices.main(["refresh", "--catalogue", "--region", "us-east-1", "--output", str(out)]) == 0
    assert f"wrote 1 us-east-1 instance types to {out}" in capsys.readouterr().out
    row = [r for r in load_catalogue(out) if r.region == "us-east-1"]
    assert row == [CatalogueRow("c7i.large", "us-east-1", 2, 4, 0, "", 0, 0.0893)]
