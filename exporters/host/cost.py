"""What the host costs per hour: EC2 prices from the instance catalogue, instance type from DMI, the cost collector."""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from ..allocation import allocation_keys, label_of
from ..prices import CATALOGUE, hourly_prices, load_catalogue
from .procfs import Paths, family, read_text

log = logging.getLogger(__package__)

DEFAULT_REGION = "us-east-1"
IMDS_URL = "http://169.254.169.254"
IMDS_TIMEOUT = 1.0  # seconds per request: off EC2 nothing answers, and startup must not hang on it
PRICE_TABLE = str(CATALOGUE)


def load_price_table(path: str = PRICE_TABLE) -> dict[tuple[str, str], float]:
    """{(region, EC2 instance type): USD per hour} from the instance catalogue (SageMaker ml.* rows left out)."""
    prices = hourly_prices(load_catalogue(path))
    return {(region, itype): usd for (itype, region), usd in prices.items() if not itype.startswith("ml.")}


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


RESERVED_LABELS = {"instance_type", "instance", "job"}


def allocation_labels(raw: Any) -> dict[str, str]:
    """`{team: ml, cost-center: cc-1}` (file) or `team=ml,cost-center=cc-1` (flag, env) -> labels on the cost
    series; keys become label names as endpoint tags do (`cost-center` -> `cost_center`)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        pairs = [part.partition("=") for part in raw.split(",") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError(f"must be KEY=VALUE[,KEY=VALUE], got {raw!r}")
        raw = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping of label names to values, like {team: ml-platform}")
    labels = {}
    for key, value in raw.items():
        name = re.sub(r"[^a-zA-Z0-9_]", "_", str(key))
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9_]*$", name) or name in RESERVED_LABELS:
            raise ValueError(f"{key!r} cannot be a label name (a letter first; not {', '.join(sorted(RESERVED_LABELS))})")
        if value is None or isinstance(value, (dict, list)) or not str(value).strip():
            raise ValueError(f"{key}: the value must be a non-empty string")
        labels[name] = str(value).strip()
    return labels


def ec2_tag_keys(raw: Any) -> tuple[str, ...]:
    """The instance tags `ec2_tags` reads: allocation keys as alerts/allocation.yml lists them (`team,cost-center`),
    each a label the cost series may carry (`cost-center` -> `cost_center`)."""
    keys = allocation_keys(raw)
    reserved = [key for key in keys if label_of(key) in RESERVED_LABELS]
    if reserved:
        raise ValueError(f"{reserved[0]!r} cannot be an allocation key here: it would replace the "
                         f"{label_of(reserved[0])} label")
    return keys


def ec2_tag_labels(keys: Iterable[str], base: str = IMDS_URL, timeout: float = IMDS_TIMEOUT) -> dict[str, str]:
    """This instance's tags for `keys`, as allocation labels, from IMDSv2 (token first, then
    /latest/meta-data/tags/instance). The instance must allow tags in metadata; any failure is one log line
    and no labels."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the metadata service is never proxied

    def get(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> str:
        request = urllib.request.Request(base.rstrip("/") + path, method=method, headers=headers or {})
        with opener.open(request, timeout=timeout) as response:
            return response.read(65536).decode("utf-8")

    try:
        token = get("/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        auth = {"X-aws-ec2-metadata-token": token}
        present = set(get("/latest/meta-data/tags/instance", headers=auth).split())
        tags = {key: get("/latest/meta-data/tags/instance/" + urllib.parse.quote(key, safe=""), headers=auth)
                for key in keys if key in present}
    except urllib.error.HTTPError as exc:
        why = "tags are not allowed in instance metadata" if exc.code == 404 else f"HTTP {exc.code}"
        log.warning("EC2 instance tags not read from %s: %s; no labels from tags", base, why)
        return {}
    except (OSError, ValueError) as exc:
        log.warning("EC2 instance tags not read from %s: %s; no labels from tags", base, exc)
        return {}
    try:
        return allocation_labels({key: value for key, value in tags.items() if value.strip()})
    except ValueError as exc:
        log.warning("EC2 instance tags ignored: %s", exc)
        return {}


class CostCollector:
    def __init__(self, instance_type: str, dollars_per_hour: float, labels: dict[str, str] | None = None):
        self.labels = {**(labels or {}), "instance_type": instance_type}
        self.dollars_per_hour = dollars_per_hour

    def collect(self) -> Iterator[Metric]:
        name = "mlscope_host_hourly_cost_dollars"
        yield family(name, "What this host costs per hour, in US dollars (from config or the price table).", "gauge",
                     [Sample(name, self.labels, self.dollars_per_hour, None, None, None)])
