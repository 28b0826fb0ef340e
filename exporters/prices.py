"""`mlscope prices refresh --region R [--output FILE]`: rebuild the SageMaker instance table from the AWS Price List API.

Reads pricing:GetProducts (ServiceCode AmazonSageMaker, real-time hosting instances of region R, on-demand
$/hour) from the Pricing API endpoint in us-east-1, then rewrites that region's rows of the table (other
regions' rows are kept). Needs the IAM permission pricing:GetProducts; credentials from boto3's chain.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import logs
from .cli import OneLineParser
from .sagemaker.aws import describe_error
from .sagemaker.config import _region
from .sagemaker.cost import DEFAULT_TABLE, PriceRow, PriceTableError, parse_table, render_table

log = logging.getLogger("mlscope.prices")

PRICING_REGION = "us-east-1"  # the Price List API lives in us-east-1 (and ap-south-1), whatever region you price
_MEMORY_RE = re.compile(r"^([\d.,]+)\s*GiB$", re.IGNORECASE)
_HEADER = [
    "# SageMaker real-time hosting (inference) instance types: vCPUs, GPUs, memory and on-demand price per instance-hour.",
    "# Source: AWS Price List API (pricing:GetProducts, ServiceCode AmazonSageMaker, component Hosting). These are LIST",
    "# prices in USD, without Savings Plans, discounts or taxes; they change. Refresh a region with:",
    "# mlscope prices refresh --region us-east-1 [--output FILE]",
    "# gpu = NVIDIA GPUs (Inferentia/Trainium accelerators are not GPUs and count 0). Lines starting with # are comments.",
]


CATALOGUE = Path(__file__).resolve().parent / "data" / "instance_catalogue.csv"
CATALOGUE_COLUMNS = ["instance_type", "region", "vcpu", "memory_gib", "gpu", "gpu_model", "gpu_memory_gib",
                     "usd_per_hour"]


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
    if not lines or [h.strip() for h in next(csv.reader([lines[0][1]]))] != CATALOGUE_COLUMNS:
        raise PriceTableError(f"{source}: header must be {','.join(CATALOGUE_COLUMNS)}")
    rows = []
    for number, line in lines[1:]:
        f = [x.strip() for x in next(csv.reader([line]))]
        if len(f) != len(CATALOGUE_COLUMNS):
            raise PriceTableError(f"{source}: line {number}: expected {len(CATALOGUE_COLUMNS)} fields, got {len(f)}")
        try:
            rows.append(CatalogueRow(f[0], f[1], int(f[2]), float(f[3]), int(f[4]), f[5], float(f[6]), float(f[7])))
        except ValueError as exc:
            raise PriceTableError(f"{source}: line {number}: {exc}") from None
    return comments, rows


def load_catalogue(path: str | Path | None = None) -> list[CatalogueRow]:
    path = Path(path) if path else CATALOGUE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceTableError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_catalogue(text, str(path))[1]


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


def parse_product(raw: str, region: str) -> PriceRow | None:
    """One PriceList entry (a JSON string) -> a row, or None when it is not an on-demand hosting instance."""
    item = json.loads(raw)
    attrs = item.get("product", {}).get("attributes", {})
    instance = attrs.get("instanceName") or attrs.get("instanceType") or ""
    usage = attrs.get("usagetype", "")
    if not instance.startswith("ml.") or not usage.endswith(f"Hosting:{instance}"):
        return None  # e.g. Spot, async, training, notebook or data-processing usage types
    if attrs.get("regionCode", region) != region:
        return None
    price = None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is not None and dim.get("unit", "").lower() in ("hrs", "hours", "hour") and float(usd) > 0:
                price = float(usd)
    if price is None:
        return None
    memory = _MEMORY_RE.match(str(attrs.get("memory", "")).strip())
    return PriceRow(instance, region, _int(attrs.get("vCpu")), _int(attrs.get("gpu")),
                    float(memory.group(1).replace(",", "")) if memory else 0.0, price)


def fetch_rows(client: Any, region: str) -> list[PriceRow]:
    rows: dict[str, PriceRow] = {}
    token = None
    while True:
        params = {"ServiceCode": "AmazonSageMaker", "Filters": product_filters(region), "FormatVersion": "aws_v1",
                  "MaxResults": 100, **({"NextToken": token} if token else {})}
        page = client.get_products(**params)
        for raw in page.get("PriceList", []):
            row = parse_product(raw, region)
            if row is not None:
                rows[row.instance_type] = row
        token = page.get("NextToken")
        if not token:
            break
    return list(rows.values())


def refresh(client: Any, region: str, output: Path, today: dt.date | None = None) -> int:
    """Replace `region`'s rows in `output` (created if missing); return how many rows were written."""
    new_rows = fetch_rows(client, region)
    if not new_rows:
        raise PriceTableError(f"the Price List API returned no SageMaker hosting instances for {region}")
    old_rows: list[PriceRow] = []
    comments = list(_HEADER)
    source = output if output.exists() else DEFAULT_TABLE
    if source.exists():
        old_comments, old_rows = parse_table(source.read_text(encoding="utf-8"), str(source))
        comments = [c for c in old_comments if not c.startswith(f"# {region}: refreshed")] or comments
    # GPU counts: keep the table's when the API leaves the attribute out.
    known_gpus = {r.instance_type: r.gpu for r in old_rows}
    new_rows = [r if r.gpu or r.instance_type not in known_gpus else
                PriceRow(r.instance_type, r.region, r.vcpu, known_gpus[r.instance_type], r.memory_gib, r.usd_per_hour)
                for r in new_rows]
    when = (today or dt.date.today()).isoformat()
    comments.append(f"# {region}: refreshed from the AWS Price List API on {when} ({len(new_rows)} instance types)")
    rows = [r for r in old_rows if r.region != region] + new_rows
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(render_table(comments, rows), encoding="utf-8")
    tmp.replace(output)
    return len(new_rows)


def make_client(endpoint_url: str | None = None) -> Any:
    return boto3.client("pricing", region_name=PRICING_REGION, endpoint_url=endpoint_url)


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="mlscope prices", description="SageMaker instance price table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("refresh", help="rebuild a region's rows from the AWS Price List API")
    cmd.add_argument("--region", required=True, help="AWS region to price, e.g. us-east-1")
    cmd.add_argument("--output", default=str(DEFAULT_TABLE), help=f"CSV to rewrite (default: {DEFAULT_TABLE})")
    cmd.add_argument("--endpoint-url", default=None, help="Pricing API endpoint override")
    cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(list(argv))
    logs.setup(args.log_level)
    try:
        region = _region(args.region)
    except ValueError as exc:
        parser.error(f"--region: {exc}")
    try:
        count = refresh(make_client(args.endpoint_url), region, Path(args.output))
    except (ClientError, BotoCoreError) as exc:
        sys.stderr.write(f"mlscope prices: error: pricing:GetProducts failed: {describe_error(exc)}\n")
        return 1
    except (PriceTableError, OSError) as exc:
        sys.stderr.write(f"mlscope prices: error: {exc}\n")
        return 1
    print(f"wrote {count} {region} instance types to {args.output}")
    return 0
