"""The one instance catalogue: it prices what the two tables it replaced priced, and `mlscope prices refresh`
with botocore's Stubber fed realistic pricing:GetProducts answers."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from helpers import run_cli
from mlscope import prices
from mlscope.host import cost as host_cost
from mlscope.prices import CATALOGUE, parse_catalogue
from mlscope.sagemaker.cost import PriceBook

BEFORE_MERGE = Path(__file__).parent / "data" / "prices_before_merge"


def product(instance: str, usd: str, vcpu: str = "4", gpu: str | None = "0", memory: str = "16 GiB",
            usage_prefix: str = "USE1-Hosting", region: str = "us-east-1") -> str:
    attrs = {"instanceName": instance, "vCpu": vcpu, "memory": memory, "component": "Hosting",
             "usagetype": f"{usage_prefix}:{instance}", "operation": "RunInstance", "regionCode": region,
             "location": "US East (N. Virginia)", "locationType": "AWS Region", "servicecode": "AmazonSageMaker",
             "servicename": "Amazon SageMaker"}
    if gpu is not None:
        attrs["gpu"] = gpu
    sku = f"SKU{abs(hash((instance, usage_prefix))) % 10**8}"
    return json.dumps({
        "product": {"productFamily": "ML Instance", "attributes": attrs, "sku": sku},
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                "description": f"${usd} per On Demand {instance} hosting instance hour",
                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": "2025-05-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
            "termAttributes": {}}}},
        "version": "20250501000000", "publicationDate": "2025-05-01T00:00:00Z"})


def expected(token: str | None = None, region: str = "us-east-1") -> dict:
    params = {"ServiceCode": "AmazonSageMaker", "Filters": prices.product_filters(region),
              "FormatVersion": "aws_v1", "MaxResults": 100}
    if token:
        params["NextToken"] = token
    return params


def no_ec2_products(stub: Stubber, region: str = "us-east-1") -> None:
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []},
                      {"ServiceCode": "AmazonEC2", "Filters": prices.ec2_filters(region), "FormatVersion": "aws_v1",
                       "MaxResults": 100})


def test_the_catalogue_prices_every_row_of_the_two_tables_it_replaced_the_same():
    """sagemaker_prices.csv and ec2_prices.csv as they shipped before the merge: same $/hour, same specs."""
    book = PriceBook.load()
    _, sagemaker = parse_catalogue((BEFORE_MERGE / "sagemaker_prices.csv").read_text())
    assert len(sagemaker) == 309
    for row in sagemaker:
        assert book.hourly_price(row.instance_type, row.region) == row.usd_per_hour, row
        spec = book.spec(row.instance_type)
        assert (spec.vcpu, spec.gpu, spec.memory_gib) == (row.vcpu, row.gpu, row.memory_gib), row
    text = (BEFORE_MERGE / "ec2_prices.csv").read_text()
    ec2 = list(csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#")))
    host_prices = host_cost.load_price_table()
    assert len(ec2) == 313 and len(host_prices) == 313  # the host exporter's table holds no ml.* rows
    for row in ec2:
        assert host_prices[(row["region"], row["instance_type"])] == float(row["usd_per_hour"]), row
    assert host_cost.resolve_hourly_cost(None, "p4d.24xlarge", "us-west-2", None) == ("p4d.24xlarge", 32.7726)
    assert book.hourly_price("ml.g5.xlarge", "us-east-1") == 1.408


def test_a_price_table_in_the_old_sagemaker_format_still_loads(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("# my negotiated prices\ninstance_type,region,vcpu,gpu,memory_gib,usd_per_hour\n"
                     "ml.g5.xlarge,us-east-1,4,1,16,0.9\n")
    book = PriceBook.load(table, overrides={"ml.g5.xlarge": {"eu-west-1": 1.2}})
    assert book.hourly_price("ml.g5.xlarge", "us-east-1") == 0.9
    assert book.hourly_price("ml.g5.xlarge", "eu-west-1") == 1.2
    assert book.hourly_price("ml.m5.xlarge", "us-east-1") is None
    assert (book.spec("ml.g5.xlarge").vcpu, book.spec("ml.g5.xlarge").gpu) == (4, 1)


def test_a_broken_price_table_is_one_line_and_exit_2(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("type,price\nml.g5.xlarge,0.9\n")
    result = run_cli("sagemaker-exporter", "--price-table", str(table), "--regions", "us-east-1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--price-table" in lines[0] and "header must be instance_type,region" in lines[0]


@pytest.fixture
def stubbed():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub


def test_refresh_rebuilds_one_region_following_next_token(stubbed, tmp_path):
    client, stub = stubbed
    stub.add_response("get_products", {
        "FormatVersion": "aws_v1", "NextToken": "page2",
        "PriceList": [product("ml.m5.xlarge", "0.2400000000"),
                      product("ml.m5.xlarge", "0.0700000000", usage_prefix="USE1-Hosting-Spot"),  # ignored
                      product("ml.g5.12xlarge", "7.5000000000", vcpu="48", gpu="4", memory="192 GiB")]},
        expected())
    stub.add_response("get_products", {
        "FormatVersion": "aws_v1",
        "PriceList": [product("ml.inf2.xlarge", "1.0100000000", gpu=None),
                      product("ml.p4d.24xlarge", "38.0000000000", vcpu="96", gpu=None, memory="1,152 GiB")]},
        expected("page2"))
    no_ec2_products(stub)
    out = tmp_path / "prices.csv"
    out.write_text(CATALOGUE.read_text())
    assert prices.refresh_catalogue(client, "us-east-1", out, today=dt.date(2026, 1, 2)) == 4
    stub.assert_no_pending_responses()
    comments, rows = parse_catalogue(out.read_text())
    assert any("us-east-1: refreshed from the AWS Price List API on 2026-01-02" in c for c in comments)
    east = {r.instance_type: r for r in rows if r.region == "us-east-1"}
    assert set(east) == {"ml.m5.xlarge", "ml.g5.12xlarge", "ml.inf2.xlarge", "ml.p4d.24xlarge"}
    assert east["ml.m5.xlarge"].usd_per_hour == 0.24
    assert (east["ml.g5.12xlarge"].vcpu, east["ml.g5.12xlarge"].gpu, east["ml.g5.12xlarge"].memory_gib) == (48, 4, 192)
    assert east["ml.p4d.24xlarge"].gpu == 8           # attribute missing: kept from the table
    assert east["ml.p4d.24xlarge"].memory_gib == 1152
    # other regions untouched
    book = PriceBook(rows)
    assert book.hourly_price("ml.m5.xlarge", "us-west-2") == PriceBook.load().hourly_price("ml.m5.xlarge", "us-west-2")


def test_refresh_with_no_products_writes_nothing(stubbed, tmp_path):
    client, stub = stubbed
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, expected())
    no_ec2_products(stub)
    out = tmp_path / "p.csv"
    with pytest.raises(prices.PriceTableError):
        prices.refresh_catalogue(client, "us-east-1", out)
    assert not out.exists()


def test_main_reports_api_errors_in_one_line(monkeypatch, tmp_path, capsys):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error("get_products", "AccessDeniedException", "not authorized to perform pricing:GetProducts",
                          http_status_code=400, expected_params=expected())
    stub.activate()
    monkeypatch.setattr(prices, "make_client", lambda endpoint_url=None: client)
    assert prices.main(["refresh", "--region", "us-east-1", "--output", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AccessDeniedException" in err[0]


def test_main_writes_the_table(monkeypatch, tmp_path, capsys):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [product("ml.c5.xlarge", "0.2270", usage_prefix="EU-Hosting", region="eu-west-1")]},
                      {"ServiceCode": "AmazonSageMaker", "Filters": prices.product_filters("eu-west-1"),
                       "FormatVersion": "aws_v1", "MaxResults": 100})
    no_ec2_products(stub, "eu-west-1")
    stub.activate()
    monkeypatch.setattr(prices, "make_client", lambda endpoint_url=None: client)
    out = tmp_path / "new.csv"
    assert prices.main(["refresh", "--region", "eu-west-1", "--output", str(out)]) == 0
    assert "wrote 1 eu-west-1" in capsys.readouterr().out
    _, rows = parse_catalogue(out.read_text())
    assert [r for r in rows if r.region == "eu-west-1"][0].instance_type == "ml.c5.xlarge"
    assert len([r for r in rows if r.region == "eu-west-1"]) == 1
    assert PriceBook(rows).hourly_price("g5.xlarge", "us-west-2") == 1.006  # other regions: from the shipped one


def test_cli_usage_errors_exit_2():
    result = run_cli("prices", "refresh")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("prices", "refresh", "--region", "mars")
    assert result.returncode == 2 and "--region" in result.stderr and "Traceback" not in result.stderr


def test_shipped_table_covers_every_family_in_three_regions():
    comments, rows = parse_catalogue(CATALOGUE.read_text())
    rows = [r for r in rows if r.instance_type.startswith("ml.")]
    assert any("as of" in c or "compiled" in c for c in comments) and any("prices refresh" in c for c in comments)
    families = {"t3", "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5",
                "inf1", "inf2", "trn1"}
    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        assert families <= {r.instance_type.split(".")[1] for r in rows if r.region == region}, region
    book = PriceBook(rows)
    assert (book.spec("ml.m5.xlarge").vcpu, book.spec("ml.g5.12xlarge").gpu, book.spec("ml.p5.48xlarge").gpu) == \
        (4, 4, 8)
    assert all(r.usd_per_hour > 0 and r.vcpu > 0 for r in rows)
