"""Two replicas of one SageMaker exporter shard (an HA pair, docs/scale.md) export the same series apart
from the scrape's `instance` and `replica` labels. Each replica's counters start at its own first poll,
so their values differ while their increases agree: whatever sums raw `sagemaker_*` series first reduces
each per-replica increase, rate or gauge to one series with `one_replica`. max, min and group by need no
reduction; the exporter's own series (mlscope_*, up) are per replica and stay so."""

REPLICA_LABELS = "instance, replica"


def one_replica(expr: str) -> str:
    """`expr` (a raw series, or a per-replica increase/rate of one) with the replicas of a shard merged."""
    return f"max without ({REPLICA_LABELS}) ({expr})"
