"""Which SageMaker metrics exist: a cached ListMetrics pass (RecentlyActive=PT3H) per namespace.

CloudWatch lists a metric with RecentlyActive=PT3H when it received data in the last three hours. A metric
that is not listed had no data then, so the exporter asks GetMetricData only for listed metrics; periods
that had settled when the listing was taken are known to be empty for the others (see poller.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from .aws import Aws, describe_error, is_credentials_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    taken_at: float                              # when the listing was taken (epoch seconds)
    metrics: frozenset[tuple[str, str, frozenset]]  # (namespace, metric, {(dimension, value)})

    def has(self, namespace: str, metric: str, dimensions: tuple[tuple[str, str], ...]) -> bool:
        return (namespace, metric, frozenset(dimensions)) in self.metrics

    def dimension_sets(self) -> set[frozenset]:
        """Every listed set of dimensions: a variant's, an endpoint's, an inference component's."""
        return {dims for _, _, dims in self.metrics}


def metric_pages(aws: Aws, **params: Any) -> Iterator[tuple[dict, str | None]]:
    """Every (metric, owning account) a ListMetrics query returns, all pages. A linked source account's target
    asks its monitoring account for that account's metrics only (IncludeLinkedAccounts + OwningAccount);
    OwningAccounts is parallel to Metrics (absent outside a monitoring account: owner None)."""
    owner = aws.target.owning_account
    if owner:
        params.update(IncludeLinkedAccounts=True, OwningAccount=owner)
    token = None
    while True:
        page = aws.call("cloudwatch", "ListMetrics", **params, **({"NextToken": token} if token else {}))
        owners = page.get("OwningAccounts") or []
        for i, metric in enumerate(page.get("Metrics", [])):
            account = owners[i] if i < len(owners) else None
            if owner is None or account in (None, owner):
                yield metric, account
        token = page.get("NextToken")
        if not token:
            return


def list_metrics(aws: Aws, namespaces: tuple[str, ...], now: float) -> Listing | None:
    """One ListMetrics pass (every page) per namespace; None when it failed (then every metric is asked for)."""
    found: set[tuple[str, str, frozenset]] = set()
    try:
        for namespace in namespaces:
            for metric, _ in metric_pages(aws, Namespace=namespace, RecentlyActive="PT3H"):
                dims = frozenset((d["Name"], d.get("Value")) for d in metric.get("Dimensions", []))
                found.add((namespace, metric["MetricName"], dims))
    except (ClientError, BotoCoreError) as exc:
        if is_credentials_error(exc):
            raise
        log.warning("%s: ListMetrics failed (%s): asking for every metric until it works again",
                    aws.target.name, describe_error(exc))
        return None
    return Listing(now, frozenset(found))
