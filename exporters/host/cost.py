"""What the host costs per hour: the shipped EC2 price table, instance type from DMI, the cost collector."""

from __future__ import annotations

import csv
import logging
import os
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import Paths, family, read_text

log = logging.getLogger(__package__)

DEFAULT_REGION = "us-east-1"
PRICE_TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "ec2_prices.csv")


def load_price_table(path: str = PRICE_TABLE) -> dict[tuple[str, str], float]:
    """{(region, instance type): USD per hour} from the shipped CSV (comment lines start with #)."""
    with open(path, encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if line.strip() and not line.startswith("#"))
        return {(row["region"].strip(), row["instance_type"].strip()): float(row["usd_per_hour"]) for row in rows}


def detect_ec2_instance_type(paths: Paths) -> str | None:
    """On EC2 (Nitro) the DMI product name is the instance type: no metadata call needed."""
    try:
        vendor = read_text(paths.sys("devices", "virtual", "dmi", "id", "sys_vendor")).strip()
        product = read_text(paths.sys("devices", "virtual", "dmi", "id", "product_name")).strip()
    except OSError:
        return None
    return product if vendor == "Amazon EC2" and product else None


def resolve_hourly_cost(hourly_cost: float | None, instance_type: str | None, region: str,
                        prices: dict[tuple[str, str], float] | None) -> tuple[str, float] | None:
    """(instance_type label, USD per hour), or None (with one log line saying why) when unknown."""
    itype = (instance_type or "").strip()
    if hourly_cost is not None:
        return itype, hourly_cost
    if not itype:
        return None
    if prices is None:
        prices = load_price_table()
    key = itype.lower()
    price = prices.get((region, key))
    if price is not None:
        return itype, price
    if key.startswith("ml."):
        log.warning("instance_type %s is a SageMaker type, priced differently from EC2 and not in the EC2 price "
                    "table; set hourly_cost_dollars to export mlscope_host_hourly_cost_dollars", itype)
    elif any(t == key for _, t in prices):
        regions = sorted(r for r, t in prices if t == key)
        log.warning("no price for instance_type %s in region %s (the price table has it for %s); set region or "
                    "hourly_cost_dollars to export mlscope_host_hourly_cost_dollars", itype, region, ", ".join(regions))
    else:
        log.warning("unknown instance_type %s: not in the EC2 price table; set hourly_cost_dollars to export "
                    "mlscope_host_hourly_cost_dollars", itype)
    return None


class CostCollector:
    def __init__(self, instance_type: str, dollars_per_hour: float):
        self.instance_type = instance_type
        self.dollars_per_hour = dollars_per_hour

    def collect(self) -> Iterator[Metric]:
        name = "mlscope_host_hourly_cost_dollars"
        yield family(name, "What this host costs per hour, in US dollars (from config or the price table).", "gauge",
                     [Sample(name, {"instance_type": self.instance_type}, self.dollars_per_hour, None, None, None)])
