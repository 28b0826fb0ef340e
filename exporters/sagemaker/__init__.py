"""`mlscope sagemaker-exporter`: SageMaker endpoints from the SageMaker and CloudWatch APIs, with cost.

Background pollers (one per account and region) fill a cache; scrapes only read it.
"""

from __future__ import annotations

import logging
import os

from ..health import Health
from ..settings import Config, SettingError
from ..spec import ExporterSpec, Parts
from .aws import Aws, Stats
from .collector import SageMakerCollector
from .config import SETTINGS, Target, linked_target, role_accounts, targets
from .cost import PriceBook, PriceTableError
from .inventory import Inventory
from .linked import LinkedAccounts, LinkedInventory
from .poller import Poller
from .serverless import ServerlessPrices


log = logging.getLogger(__name__)
# boto3 takes an empty AWS_PROFILE as a profile named "" and fails every call (ProfileNotFound), which is
# what a `.env` line `AWS_PROFILE=` or compose's `${AWS_PROFILE:-}` hands a container.
EMPTY_MEANS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def drop_empty_aws_profile() -> None:
    for name in EMPTY_MEANS_UNSET:
        if os.environ.get(name) == "":
            del os.environ[name]
            log.info("%s is set but empty: ignored (the default credential chain is used)", name)


def build(cfg: Config, health: Health) -> Parts:
    drop_empty_aws_profile()
    try:
        prices = PriceBook.load(cfg.price_table, cfg.prices)
    except PriceTableError as exc:
        raise SettingError(f"--price-table: {exc}") from None

    def poller(target: Target) -> Poller:
        aws = Aws(target, Stats(), max_attempts=cfg.aws_max_attempts, timeout=cfg.aws_timeout)
        kind = LinkedInventory if target.linked else Inventory
        inventory = kind(aws, cfg.endpoint_name_regex, cfg.endpoint_tags, cfg.inventory_interval)
        return Poller(aws, inventory, prices, health, poll_interval=cfg.poll_interval, period=cfg.period,
                      delay=cfg.delay, statistics=cfg.statistics, idle_after=cfg.idle_after,
                      idle_poll_interval=cfg.idle_poll_interval, list_metrics_interval=cfg.list_metrics_interval,
                      discounts=cfg.discounts, statistics_api=cfg.statistics_api,
                      max_statistics_per_second=cfg.max_get_metric_statistics_per_second,
                      serverless_prices=ServerlessPrices(
                          cfg.serverless_price_per_gb_second, cfg.serverless_price_per_request,
                          cfg.serverless_provisioned_price_per_gb_second,
                          cfg.serverless_provisioned_inference_price_per_gb_second))

    polled = targets(cfg)
    pollers = [poller(target) for target in polled]
    fleets = []
    for monitor in [t for t in polled if t.monitor]:   # CloudWatch cross-account observability (linked.py)
        skip = role_accounts(polled, monitor.region)
        if cfg.linked_accounts is True:
            fleets.append(LinkedAccounts(pollers[polled.index(monitor)].aws,
                                         lambda account, m=monitor: poller(linked_target(m, account)),
                                         skip, cfg.list_metrics_interval or cfg.inventory_interval))
        else:
            pollers += [poller(linked_target(monitor, a)) for a in cfg.linked_accounts if a not in skip]
    return Parts(direct=[SageMakerCollector(pollers, fleets)], services=[*pollers, *fleets])


SPEC = ExporterSpec(
    command="sagemaker-exporter",
    title="SageMaker exporter",
    default_port=9858,
    settings=SETTINGS,
    build=build,
)
