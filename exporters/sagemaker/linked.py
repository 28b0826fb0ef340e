"""CloudWatch cross-account observability: a monitoring account reads its linked source accounts' metrics.

A source account's target (config.linked_target) uses the monitoring account's credentials. Its endpoints
come from its metrics' dimensions (ListMetrics with IncludeLinkedAccounts and OwningAccount), its queries
carry AccountId (cloudwatch.Query.account_id). The monitoring account cannot describe the source account's
endpoints, so there is no instance type, count, tag or status: no cost series (status "Unknown").
With `linked_accounts: true`, LinkedAccounts finds the source accounts (OwningAccounts) and starts a
poller for each new one.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ..spec import BackgroundLoop
from .aws import Aws, describe_error
from .inventory import Endpoint, Inventory, Variant
from .listing import list_metrics, metric_pages
from .series import ASYNC, INSTANCE_NS, SAGEMAKER_NS

log = logging.getLogger(__name__)

UNKNOWN_STATUS = "Unknown"  # the monitoring account cannot DescribeEndpoint in a source account
ENDPOINT_LEVEL_ASYNC = {metric for metric, _, _, per_variant in ASYNC.values() if not per_variant}


class LinkedInventory(Inventory):
    """A source account's endpoints and variants, from the dimensions of its recently active metrics
    (RecentlyActive=PT3H, re-listed every `refresh_interval`) instead of the SageMaker API."""

    def __init__(self, aws: Aws, *args, **kwargs):
        super().__init__(aws, *args, **kwargs)
        self._endpoints: list[Endpoint] | None = None
        self._taken = 0.0
        if self.tag_filter:
            log.warning("%s: endpoint_tags cannot match a linked account's endpoints (their tags are not "
                        "readable from the monitoring account): none of them is polled", aws.target.name)

    def refresh(self) -> tuple[list[Endpoint], int]:
        now = self.clock()
        if self._endpoints is None or now - self._taken >= self.refresh_interval:
            listing = list_metrics(self.aws, (SAGEMAKER_NS, INSTANCE_NS), now)
            if listing is None:  # logged and counted by list_metrics: keep the last endpoints
                return list(self._endpoints or []), 1
            self._endpoints = [] if self.tag_filter else self._endpoints_from(listing.metrics)
            self._taken = now
        return list(self._endpoints), 0

    def _endpoints_from(self, metrics: frozenset) -> list[Endpoint]:
        variants: dict[str, set[str]] = {}
        asynchronous: set[str] = set()
        for _, metric, dims in metrics:
            names = dict(dims)
            endpoint = names.get("EndpointName")
            if not endpoint or (self.name_regex is not None and not self.name_regex.search(endpoint)):
                continue
            if "VariantName" in names:
                variants.setdefault(endpoint, set()).add(names["VariantName"])
            elif metric in ENDPOINT_LEVEL_ASYNC:
                asynchronous.add(endpoint)
        target = self.aws.target
        return [Endpoint(name=name, arn=f"arn:aws:sagemaker:{target.region}:{target.account}:endpoint/{name.lower()}",
                         status=UNKNOWN_STATUS, last_modified=0.0, tags=(),
                         variants=tuple(Variant(v, None, False, None, None) for v in sorted(names)),
                         asynchronous=name in asynchronous)
                for name, names in sorted(variants.items())]


class LinkedAccounts(BackgroundLoop):
    """`linked_accounts: true`: every `interval`, the source accounts that own recently active SageMaker metrics
    in the monitoring account (ListMetrics IncludeLinkedAccounts, OwningAccounts); a poller for each new one."""

    def __init__(self, monitor: Aws, make_poller: Callable[[str], object], skip: set[str], interval: float):
        super().__init__(f"linked accounts {monitor.target.name}")
        self.monitor = monitor
        self.make_poller = make_poller
        self.skip = set(skip)             # accounts polled otherwise (with a role of their own)
        self.interval = max(interval, 60.0)
        self._own: str | None = monitor.target.account
        self._lock = threading.Lock()
        self._pollers: dict[str, object] = {}
        self._started = False

    @property
    def pollers(self) -> list:
        with self._lock:
            return list(self._pollers.values())

    def discover(self) -> list[str]:
        """The source accounts found now; starts a poller for each new one (once this service runs)."""
        if self._own is None:
            self._own = str(self.monitor.call("sts", "GetCallerIdentity")["Account"])
        found: set[str] = set()
        for namespace in (SAGEMAKER_NS, INSTANCE_NS):
            for _, account in metric_pages(self.monitor, Namespace=namespace, RecentlyActive="PT3H",
                                           IncludeLinkedAccounts=True):
                if account and account != self._own and account not in self.skip:
                    found.add(account)
        for account in sorted(found - set(self._pollers)):
            poller = self.make_poller(account)
            with self._lock:
                self._pollers[account] = poller
            log.info("%s: linked source account %s found: polling it", self.monitor.target.name, account)
            if self._started:
                poller.start()
        return sorted(found)

    def start(self) -> None:
        self._started = True
        super().start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.discover()
            except (ClientError, BotoCoreError) as exc:  # counted per call by Aws
                log.warning("%s: finding linked accounts failed: %s; next try in %.0fs", self.monitor.target.name,
                            describe_error(exc), self.interval)
            except Exception as exc:  # never let discovery kill the thread
                self.monitor.stats.count_error("ListMetrics", type(exc).__name__)
                log.error("%s: finding linked accounts failed: %s", self.monitor.target.name, exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        super().stop()
        for poller in self.pollers:
            poller.stop()
