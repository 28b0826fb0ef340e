"""The shipped SageMaker instance table: vCPUs, GPUs and on-demand $/instance-hour per region.

The CSV (exporters/data/sagemaker_prices.csv) is long-format, one row per (instance_type, region):
    instance_type,region,vcpu,gpu,memory_gib,usd_per_hour
Lines starting with `#` are comments (source and date). `mlscope prices refresh` rebuilds it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "data" / "sagemaker_prices.csv"
COLUMNS = ["instance_type", "region", "vcpu", "gpu", "memory_gib", "usd_per_hour"]


class PriceTableError(ValueError):
    pass


@dataclass(frozen=True)
class InstanceSpec:
    instance_type: str
    vcpu: int
    gpu: int
    memory_gib: float


@dataclass(frozen=True)
class PriceRow:
    instance_type: str
    region: str
    vcpu: int
    gpu: int
    memory_gib: float
    usd_per_hour: float


def parse_table(text: str, source: str = "price table") -> tuple[list[str], list[PriceRow]]:
    """Return (comment lines, rows). Raises PriceTableError naming the line that is wrong."""
    comments: list[str] = []
    data_lines: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            comments.append(line)
        elif line.strip():
            data_lines.append((number, line))
    if not data_lines:
        raise PriceTableError(f"{source}: no header line")
    header = [h.strip() for h in next(csv.reader([data_lines[0][1]]))]
    if header != COLUMNS:
        raise PriceTableError(f"{source}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
    rows = []
    for number, line in data_lines[1:]:
        fields = [f.strip() for f in next(csv.reader([line]))]
        if len(fields) != len(COLUMNS):
            raise PriceTableError(f"{source}: line {number}: expected {len(COLUMNS)} fields, got {len(fields)}")
        try:
            rows.append(PriceRow(fields[0], fields[1], int(fields[2]), int(fields[3]), float(fields[4]),
                                 float(fields[5])))
        except ValueError as exc:
            raise PriceTableError(f"{source}: line {number}: {exc}") from None
    return comments, rows


def render_table(comments: list[str], rows: list[PriceRow]) -> str:
    out = io.StringIO()
    for line in comments:
        out.write(line.rstrip("\n") + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in sorted(rows, key=lambda r: (r.region, _type_sort_key(r.instance_type))):
        writer.writerow([r.instance_type, r.region, r.vcpu, r.gpu, f"{r.memory_gib:g}", f"{r.usd_per_hour:g}"])
    return out.getvalue()


_SIZES = {"medium": 0.5, "large": 1, "xlarge": 2}


def _type_sort_key(instance_type: str) -> tuple:
    parts = instance_type.split(".")
    family = ".".join(parts[:2])
    size = parts[-1] if len(parts) > 2 else ""
    if size in _SIZES:
        rank = _SIZES[size]
    else:
        digits = size.removesuffix("xlarge")
        rank = 2 * float(digits) if digits.replace(".", "").isdigit() else 1e9
    return family, rank, instance_type


class PriceBook:
    """Price and capacity lookups: config overrides first, then the table."""

    def __init__(self, rows: list[PriceRow], overrides: dict[str, dict[str, float] | float] | None = None):
        self._prices: dict[tuple[str, str], float] = {}
        self._specs: dict[str, InstanceSpec] = {}
        for r in rows:
            self._prices[(r.instance_type, r.region)] = r.usd_per_hour
            self._specs.setdefault(r.instance_type, InstanceSpec(r.instance_type, r.vcpu, r.gpu, r.memory_gib))
        self._overrides = overrides or {}

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None) -> "PriceBook":
        path = Path(path) if path else DEFAULT_TABLE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"cannot read {path}: {exc.strerror or exc}") from None
        _, rows = parse_table(text, str(path))
        return cls(rows, overrides)

    def hourly_price(self, instance_type: str, region: str) -> float | None:
        override = self._overrides.get(instance_type)
        if isinstance(override, dict):
            if region in override:
                return float(override[region])
        elif override is not None:
            return float(override)
        return self._prices.get((instance_type, region))

    def spec(self, instance_type: str | None) -> InstanceSpec | None:
        return self._specs.get(instance_type) if instance_type else None
