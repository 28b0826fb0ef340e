"""The instance catalogue as the rightsizer uses it: specs and prices per (type, region), with overrides."""

from __future__ import annotations

from dataclasses import replace

from ..prices import CatalogueRow, load_catalogue, overridden

# Relative GPU throughput, T4 = 1: the lower of the dense FP16 tensor TFLOPS ratio and the memory-bandwidth
# ratio (NVIDIA data sheets), because inference is bound by one or the other and we must not promise more.
# TFLOPS / GB/s: T4 65/320, A10G 125/600, L4 121/300, L40S 362/864, V100 125/900, A100-40GB 312/1555, H100 989/3350.
GPU_PERFORMANCE = {"T4": 1.0, "A10G": 1.875, "L4": 0.94, "L40S": 2.7, "V100": 1.92, "A100": 4.8, "H100": 10.47}
# Families left out of the options unless the subject already runs on them: burstable CPU credits
# (a sustained load runs out of them) and Neuron accelerators (the model must be compiled for them).
SPECIAL_FAMILIES = ("t2", "t3", "t3a", "t4g", "inf1", "inf2", "trn1", "trn1n")


# What the rightsizer knows of an instance type in one region (its price with the user's overrides applied).
Instance = CatalogueRow


def family(instance: Instance) -> str:
    return instance.instance_type.removeprefix("ml.").split(".")[0]


def gpu_units(instance: Instance) -> float:
    """GPU throughput of one instance in T4 equivalents."""
    return instance.gpu * GPU_PERFORMANCE.get(instance.gpu_model, 1.0)


class Catalogue:
    def __init__(self, rows: list[CatalogueRow], overrides: dict | None = None):
        self._rows = {(r.instance_type, r.region): r for r in rows}
        self._overrides = overrides or {}
        self._candidates: dict[tuple[str, bool], list[Instance]] = {}

    @classmethod
    def load(cls, path: str | None = None, overrides: dict | None = None) -> "Catalogue":
        return cls(load_catalogue(path), overrides)

    def price(self, instance_type: str, region: str, listed: float | None) -> float | None:
        return overridden(self._overrides, instance_type, region, listed)

    def get(self, instance_type: str | None, region: str) -> Instance | None:
        row = self._rows.get((instance_type or "", region))
        if row is None or row.vcpu <= 0 or row.memory_gib <= 0:  # a refresh may leave a spec out: unusable
            return None
        return replace(row, usd_per_hour=self.price(row.instance_type, region, row.usd_per_hour))

    def candidates(self, region: str, sagemaker: bool) -> list[Instance]:
        key = (region, sagemaker)
        if key not in self._candidates:
            types = sorted(t for t, r in self._rows if r == region and t.startswith("ml.") == sagemaker)
            self._candidates[key] = [i for i in (self.get(t, region) for t in types) if i is not None]
        return self._candidates[key]
