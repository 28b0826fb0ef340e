"""MLScope's one instance table (exporters/data/instance_catalogue.csv), its one loader, and `mlscope prices refresh`.

The catalogue holds every SageMaker (ml.*) and EC2 instance type MLScope prices, one row per (type, region): specs
and on-demand USD per instance-hour. `load_catalogue` is the only reader: the host exporter's cost, the SageMaker
exporter's PriceBook and the rightsizer all use it. `mlscope prices refresh --region R` rebuilds R's rows from
pricing:GetProducts (SageMaker hosting and EC2 on-demand Linux) through the Pricing API endpoint in us-east-1;
other regions' rows are kept. Needs the IAM permission pricing:GetProducts; credentials from boto3's chain.
boto3 is imported by the refresh command only, so the exporters load prices without it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("mlscope.prices")

PRICING_REGION = "us-east-1"  # the Price List API lives in us-east-1 (and ap-south-1), whatever region you price
_MEMORY_RE = re.compile(r"^([\d.,]+)\s*Gi?B$", re.IGNORECASE)


class PriceTableError(ValueError):
    pass


CATALOGUE = Path(__file__).resolve().parent / "data" / "instance_catalogue.csv"
CATALOGUE_COLUMNS = ["instance_type", "region", "vcpu", "memory_gib", "gpu", "gpu_model", "gpu_memory_gib",
                     "usd_per_hour"]
# The SageMaker exporter's own table before the catalogue replaced it: a `price_table` in this form still loads.
SAGEMAKER_TABLE_COLUMNS = ["instance_type", "region", "vcpu", "gpu", "memory_gib", "usd_per_hour"]


@dataclass(frozen=True)
class CatalogueRow:
    """One instance type in one region: what it offers and its on-demand USD per instance-hour."""

    instance_type: str
    region: str
    vcpu: int
    memory_gib: float
    gpu: int
    gpu_model: str
    gpu_memory_gib: float
    usd_per_hour: float


def parse_catalogue(text: str, source: str = "instance catalogue") -> tuple[list[str], list[CatalogueRow]]:
    """(comment lines, rows) of the instance catalogue CSV; PriceTableError names the line that is wrong."""
    comments = [line for line in text.splitlines() if line.startswith("#")]
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    header = [h.strip() for h in next(csv.reader([lines[0][1]]))] if lines else []
    if header not in (CATALOGUE_COLUMNS, SAGEMAKER_TABLE_COLUMNS):
        raise PriceTableError(f"{source}: header must be {','.join(CATALOGUE_COLUMNS)} "
                              f"(or {','.join(SAGEMAKER_TABLE_COLUMNS)})")
    rows = []
    for number, line in lines[1:]:
        f = [x.strip() for x in next(csv.reader([line]))]
        if len(f) != len(header):
            raise PriceTableError(f"{source}: line {number}: expected {len(header)} fields, got {len(f)}")
        try:
            rows.append(_row(dict(zip(header, f))))
        except ValueError as exc:
            raise PriceTableError(f"{source}: line {number}: {exc}") from None
    return comments, rows


def _row(f: dict[str, str]) -> CatalogueRow:
    return CatalogueRow(f["instance_type"], f["region"], int(f["vcpu"]), float(f["memory_gib"]), int(f["gpu"]),
                        f.get("gpu_model", ""), float(f.get("gpu_memory_gib", 0)), float(f["usd_per_hour"]))


def load_catalogue(path: str | Path | None = None) -> list[CatalogueRow]:
    path = Path(path) if path else CATALOGUE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceTableError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_catalogue(text, str(path))[1]


def hourly_prices(rows: list[CatalogueRow]) -> dict[tuple[str, str], float]:
    """{(instance type, region): on-demand USD per hour}."""
    return {(r.instance_type, r.region): r.usd_per_hour for r in rows}


def overridden(overrides: dict, instance_type: str, region: str, listed: float | None) -> float | None:
    """A user's `prices:` override ({type: price} or {type: {region: price}}) wins over the listed price."""
    override = overrides.get(instance_type)
    if isinstance(override, dict):
        return float(override[region]) if region in override else listed
    return float(override) if override is not None else listed


def render_catalogue(comments: list[str], rows: list[CatalogueRow]) -> str:
    out = io.StringIO()
    out.writelines(line.rstrip("\n") + "\n" for line in comments)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATALOGUE_COLUMNS)
    for r in sorted(rows, key=lambda r: (r.instance_type.startswith("ml."), r.region, r.instance_type)):
        writer.writerow([r.instance_type, r.region, r.vcpu, f"{r.memory_gib:g}", r.gpu, r.gpu_model,
                         f"{r.gpu_memory_gib:g}", f"{r.usd_per_hour:g}"])
    return out.getvalue()


def product_filters(region: str) -> list[dict]:
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
    ]


def _int(text: Any) -> int:
    try:
        return int(float(str(text).strip()))
    except ValueError:
        return 0


def ec2_filters(region: str) -> list[dict]:
    """On-demand Linux, shared tenancy, no pre-installed software: one product per EC2 instance type."""
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
        ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"), ("licenseModel", "No License required"))]


def _on_demand_usd(item: dict) -> float | None:
    price = None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is not None and dim.get("unit", "").lower() in ("hrs", "hours", "hour") and float(usd) > 0:
                price = float(usd)
    return price


def _gib(text: Any) -> float:
    memory = _MEMORY_RE.match(str(text or "").strip())
    return float(memory.group(1).replace(",", "")) if memory else 0.0


def _sagemaker_hosting(item: dict, region: str) -> tuple[str, dict, float] | None:
    """(instance type, attributes, on-demand $/h) of a SageMaker hosting instance product, else None."""
    attrs = item.get("product", {}).get("attributes", {})
    instance = attrs.get("instanceName") or attrs.get("instanceType") or ""
    usage = attrs.get("usagetype", "")
    if not instance.startswith("ml.") or not usage.endswith(f"Hosting:{instance}"):
        return None  # e.g. Spot, async, training, notebook or data-processing usage types
    if attrs.get("regionCode", region) != region:
        return None
    price = _on_demand_usd(item)
    return None if price is None else (instance, attrs, price)


def parse_catalogue_product(raw: str, region: str) -> CatalogueRow | None:
    """A SageMaker hosting or EC2 on-demand product -> a catalogue row with its specs (vcpu, memory, gpu,
    gpuMemory attributes; gpuMemory is the total over the instance's GPUs). The GPU model is not an attribute."""
    item = json.loads(raw)
    found = _sagemaker_hosting(item, region)
    if found is None:
        attrs = item.get("product", {}).get("attributes", {})
        instance = attrs.get("instanceType") or ""
        if not instance or instance.startswith("ml.") or attrs.get("regionCode", region) != region:
            return None
        price = _on_demand_usd(item)
        if price is None:
            return None
        found = (instance, attrs, price)
    instance, attrs, price = found
    gpus = _int(attrs.get("gpu"))
    gpu_memory = _gib(attrs.get("gpuMemory") or attrs.get("gpuMemoryGiB"))
    return CatalogueRow(instance, region, _int(attrs.get("vcpu") or attrs.get("vCpu")), _gib(attrs.get("memory")),
                        gpus, "", gpu_memory / gpus if gpus else 0.0, price)


def _products(client: Any, service: str, filters: list[dict]):
    token = None
    while True:
        page = client.get_products(ServiceCode=service, Filters=filters, FormatVersion="aws_v1", MaxResults=100,
                                   **({"NextToken": token} if token else {}))
        yield from page.get("PriceList", [])
        token = page.get("NextToken")
        if not token:
            return


def fetch_catalogue(client: Any, region: str) -> list[CatalogueRow]:
    """SageMaker hosting instances and EC2 instances of `region`, with their specs and on-demand prices."""
    raws = [*_products(client, "AmazonSageMaker", product_filters(region)),
            *_products(client, "AmazonEC2", ec2_filters(region))]
    rows = (parse_catalogue_product(raw, region) for raw in raws)
    return list({r.instance_type: r for r in rows if r is not None}.values())


def refresh_catalogue(client: Any, region: str, output: Path, today: dt.date | None = None) -> int:
    """Replace `region`'s rows of the instance catalogue `output`; keep what the API leaves out (GPU model,
    GPU count and memory) from the catalogue's rows for the same type. Returns the rows written."""
    new_rows = fetch_catalogue(client, region)
    if not new_rows:
        raise PriceTableError(f"the Price List API returned no instances for {region}")
    source = output if output.exists() else CATALOGUE
    comments, old_rows = parse_catalogue(source.read_text(encoding="utf-8"), str(source)) if source.exists() \
        else ([], [])
    known = {r.instance_type: r for r in old_rows}
    new_rows = [_fill_from(r, known.get(r.instance_type)) for r in new_rows]
    when = (today or dt.date.today()).isoformat()
    comments = [c for c in comments if not c.startswith(f"# {region}: refreshed")]
    comments.append(f"# {region}: refreshed from the AWS Price List API on {when} ({len(new_rows)} instance types)")
    _replace(output, render_catalogue(comments, [r for r in old_rows if r.region != region] + new_rows))
    return len(new_rows)


def _fill_from(row: CatalogueRow, old: CatalogueRow | None) -> CatalogueRow:
    if old is None:
        return row
    gpu = row.gpu or old.gpu
    return CatalogueRow(row.instance_type, row.region, row.vcpu or old.vcpu, row.memory_gib or old.memory_gib, gpu,
                        row.gpu_model or old.gpu_model, row.gpu_memory_gib or old.gpu_memory_gib, row.usd_per_hour)


def _replace(output: Path, text: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)


def make_client(endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client("pricing", region_name=PRICING_REGION, endpoint_url=endpoint_url)


def main(argv: Sequence[str]) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from . import logs
    from .cli import OneLineParser
    from .sagemaker.aws import describe_error
    from .sagemaker.config import _region

    parser = OneLineParser(prog="mlscope prices", description="the instance catalogue: specs and on-demand prices")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("refresh", help="rebuild a region's rows from the AWS Price List API")
    cmd.add_argument("--region", required=True, help="AWS region to price, e.g. us-east-1")
    cmd.add_argument("--catalogue", action="store_true",
                     help="accepted for compatibility: the catalogue is the only table, always rebuilt")
    cmd.add_argument("--output", default=None, help=f"CSV to rewrite (default: {CATALOGUE})")
    cmd.add_argument("--endpoint-url", default=None, help="Pricing API endpoint override")
    cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(list(argv))
    logs.setup(args.log_level)
    try:
        region = _region(args.region)
    except ValueError as exc:
        parser.error(f"--region: {exc}")
    try:
        output = Path(args.output or CATALOGUE)
        count = refresh_catalogue(make_client(args.endpoint_url), region, output)
    except (ClientError, BotoCoreError) as exc:
        sys.stderr.write(f"mlscope prices: error: pricing:GetProducts failed: {describe_error(exc)}\n")
        return 1
    except (PriceTableError, OSError) as exc:
        sys.stderr.write(f"mlscope prices: error: {exc}\n")
        return 1
    print(f"wrote {count} {region} instance types to {output}")
    return 0
