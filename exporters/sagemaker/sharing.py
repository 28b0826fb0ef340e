"""Splitting a variant's instance cost among the inference components that share its instances.

Each component reserves, per copy, accelerators (NumberOfAcceleratorDevicesRequired), CPU cores and memory
(its ComputeResourceRequirements). The variant's capacity is its instances times the instance type's GPUs (when
the instance has GPUs and the components reserve accelerators) or vCPUs (otherwise). A component's share is
copies x its reservation / capacity; what no component reserves is the `(idle)` share, so the shares and their
costs add up to the variant's cost exactly. If the reservations add up to more than the capacity (a stale
inventory or a table with the wrong counts), the shares are scaled down to add up to 1 and (idle) is 0.
"""

from __future__ import annotations

from typing import Sequence

from .cost import InstanceSpec
from .inventory import Component

IDLE = "(idle)"


def split(hourly: float, instances: int, spec: InstanceSpec | None,
          components: Sequence[Component]) -> dict[str, tuple[float, float]]:
    """{component or (idle): (share of the variant's capacity, $/hour)}; {} when it cannot be split."""
    if not components or spec is None or instances <= 0:
        return {}
    by_accelerator = spec.gpu > 0 and any(c.accelerators > 0 for c in components)
    capacity = instances * (spec.gpu if by_accelerator else spec.vcpu)
    if capacity <= 0:
        return {}
    reserved = {c.name: c.copies * (c.accelerators if by_accelerator else c.cpu_cores) for c in components}
    scale = 1 / max(capacity, sum(reserved.values()))
    shares = {name: amount * scale for name, amount in reserved.items()}
    shares[IDLE] = max(0.0, 1 - sum(shares.values()))
    return {name: (share, hourly * share) for name, share in shares.items()}
