"""Price and capacity lookups for SageMaker instance types: `prices` overrides first, then the instance catalogue.

The catalogue (exporters/data/instance_catalogue.csv, read by mlscope.prices.load_catalogue) is MLScope's one
instance table; `price_table` points the exporter at another file in the same format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..prices import CatalogueRow, PriceTableError, hourly_prices, load_catalogue, overridden

__all__ = ["InstanceSpec", "PriceBook", "PriceTableError"]


@dataclass(frozen=True)
class InstanceSpec:
    instance_type: str
    vcpu: int
    gpu: int
    memory_gib: float


class PriceBook:
    """Price and capacity lookups: config overrides first, then the table."""

    def __init__(self, rows: list[CatalogueRow], overrides: dict[str, dict[str, float] | float] | None = None):
        self._prices = hourly_prices(rows)
        self._specs: dict[str, InstanceSpec] = {}
        for r in rows:
            self._specs.setdefault(r.instance_type, InstanceSpec(r.instance_type, r.vcpu, r.gpu, r.memory_gib))
        self._overrides = overrides or {}

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None) -> "PriceBook":
        return cls(load_catalogue(path), overrides)

    def hourly_price(self, instance_type: str, region: str) -> float | None:
        return overridden(self._overrides, instance_type, region, self._prices.get((instance_type, region)))

    def spec(self, instance_type: str | None) -> InstanceSpec | None:
        return self._specs.get(instance_type) if instance_type else None
