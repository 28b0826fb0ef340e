"""Which endpoints exist: ListEndpoints every cycle; DescribeEndpoint / DescribeEndpointConfig / ListTags
only for new or changed endpoints (or every `inventory_interval`)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from .aws import Aws, describe_error, error_code, is_credentials_error
from .tags import numeric_tags

log = logging.getLogger(__name__)

# Endpoints in these states publish no metrics: list them, but don't pay for CloudWatch queries.
QUIET_STATUSES = {"Creating", "Failed", "Deleting", "OutOfService"}
_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")


def tag_label(key: str) -> str:
    """`mlscope:slo` -> `tag_mlscope_slo` (Prometheus label-name rules)."""
    return "tag_" + _LABEL_RE.sub("_", key)


@dataclass(frozen=True)
class Serverless:
    memory_mb: int                 # MemorySizeInMB: what serverless compute is billed by
    max_concurrency: int | None


@dataclass(frozen=True)
class Variant:
    name: str
    instance_type: str | None      # None: serverless, or the endpoint config is gone
    serverless: bool
    current_instances: int | None  # None for serverless variants
    desired_instances: int | None
    serverless_config: Serverless | None = None


@dataclass(frozen=True)
class EndpointConfig:
    variants: dict                 # variant -> (instance type, ServerlessConfig or None)
    asynchronous: bool = False     # AsyncInferenceConfig present


def _serverless(raw: dict | None) -> Serverless | None:
    if not raw or raw.get("MemorySizeInMB") is None:
        return None
    concurrency = raw.get("MaxConcurrency")
    return Serverless(int(raw["MemorySizeInMB"]), None if concurrency is None else int(concurrency))


@dataclass(frozen=True)
class Endpoint:
    name: str
    arn: str
    status: str
    last_modified: float
    tags: tuple[tuple[str, str], ...]
    variants: tuple[Variant, ...]
    numbers: tuple[tuple[str, float], ...] = ()   # valid numeric mlscope:* tags (see tags.py)
    asynchronous: bool = False                    # an asynchronous inference endpoint

    def number(self, key: str) -> float | None:
        return dict(self.numbers).get(key)

    @property
    def tag_labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for key, val in sorted(self.tags):
            labels.setdefault(tag_label(key), val)  # two keys that sanitise alike: the first (sorted) wins
        return labels


def _not_found(exc: Exception) -> bool:
    if not isinstance(exc, ClientError):
        return False
    err = exc.response.get("Error", {})
    return err.get("Code") in ("ValidationException", "ResourceNotFound") and "not find" in str(
        err.get("Message", "")).lower()


class Inventory:
    def __init__(self, aws: Aws, name_regex: re.Pattern | None = None, tag_filter: dict | None = None,
                 refresh_interval: float = 300.0, clock: Callable[[], float] = time.time):
        self.aws = aws
        self.name_regex = name_regex
        self.tag_filter = tag_filter or {}
        self.refresh_interval = refresh_interval
        self.clock = clock
        self._cache: dict[str, tuple[Endpoint, float]] = {}  # name -> (endpoint, fetched at)
        self._configs: dict[str, EndpointConfig] = {}
        self._excluded: dict[str, float] = {}  # name -> last_modified, endpoints whose tags did not match
        self._warned_tags: set[tuple[str, str, str]] = set()  # (endpoint, tag, value) already logged

    def refresh(self) -> tuple[list[Endpoint], int]:
        """Return (selected endpoints, number of per-endpoint problems). ListEndpoints failures raise."""
        summaries = []
        token = None
        while True:
            params = {"MaxResults": 100, **({"NextToken": token} if token else {})}
            if self.name_regex is not None and self.name_regex.pattern.isalnum():
                params["NameContains"] = self.name_regex.pattern
            page = self.aws.call("sagemaker", "ListEndpoints", **params)
            summaries += page.get("Endpoints", [])
            token = page.get("NextToken")
            if not token:
                break
        now = self.clock()
        endpoints: list[Endpoint] = []
        problems = 0
        seen = set()
        for summary in summaries:
            name = summary["EndpointName"]
            if self.name_regex is not None and not self.name_regex.search(name):
                continue
            seen.add(name)
            modified = summary["LastModifiedTime"].timestamp()
            if self._excluded.get(name) == modified:
                continue
            cached = self._cache.get(name)
            if (cached and cached[0].last_modified == modified and cached[0].status == summary["EndpointStatus"]
                    and now - cached[1] < self.refresh_interval):
                endpoints.append(cached[0])
                continue
            try:
                endpoint = self._describe(summary)
            except (ClientError, BotoCoreError) as exc:
                if _not_found(exc):
                    log.debug("endpoint %s disappeared during the cycle", name)
                    continue
                if is_credentials_error(exc):
                    raise
                problems += 1
                log.warning("%s: endpoint %s: %s", self.aws.target.name, name, describe_error(exc))
                if cached:
                    endpoints.append(cached[0])
                continue
            if not self._tags_match(endpoint):
                self._excluded[name] = modified
                self._cache.pop(name, None)
                continue
            self._excluded.pop(name, None)
            self._cache[name] = (endpoint, now)
            endpoints.append(endpoint)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        for gone in set(self._excluded) - seen:
            del self._excluded[gone]
        return endpoints, problems

    def _tags_match(self, endpoint: Endpoint) -> bool:
        tags = dict(endpoint.tags)
        return all(key in tags and rx.fullmatch(tags[key]) for key, rx in self.tag_filter.items())

    def _describe(self, summary: dict) -> Endpoint:
        name = summary["EndpointName"]
        desc = self.aws.call("sagemaker", "DescribeEndpoint", EndpointName=name)
        config = self._config(desc.get("EndpointConfigName"))
        tags: list[tuple[str, str]] = []
        token = None
        while True:
            page = self.aws.call("sagemaker", "ListTags", ResourceArn=desc["EndpointArn"], MaxResults=100,
                                 **({"NextToken": token} if token else {}))
            tags += [(t["Key"], t.get("Value", "")) for t in page.get("Tags", [])]
            token = page.get("NextToken")
            if not token:
                break
        variants = []
        summaries = desc.get("ProductionVariants") or [{"VariantName": v} for v in config.variants]
        for pv in summaries:
            vname = pv["VariantName"]
            instance_type, configured = config.variants.get(vname, (None, None))
            sls = _serverless(pv.get("CurrentServerlessConfig")) or _serverless(configured)
            serverless = sls is not None or "CurrentServerlessConfig" in pv or configured is not None
            variants.append(Variant(
                name=vname,
                instance_type=None if serverless else instance_type,
                serverless=serverless,
                current_instances=None if serverless else pv.get("CurrentInstanceCount"),
                desired_instances=None if serverless else pv.get("DesiredInstanceCount"),
                serverless_config=sls,
            ))
        return Endpoint(name=name, arn=desc["EndpointArn"], status=desc.get("EndpointStatus", "Unknown"),
                        last_modified=summary["LastModifiedTime"].timestamp(), tags=tuple(sorted(tags)),
                        variants=tuple(variants), numbers=self._numbers(name, dict(tags)),
                        asynchronous=config.asynchronous)

    def _numbers(self, endpoint: str, tags: dict[str, str]) -> tuple[tuple[str, float], ...]:
        values, invalid = numeric_tags(tags)
        for tag, raw in invalid:
            self.aws.stats.count("invalid_tags", tag.key)
            if (endpoint, tag.key, raw) not in self._warned_tags:
                self._warned_tags.add((endpoint, tag.key, raw))
                log.warning("%s: endpoint %s: tag %s=%r is not %s: no %s series", self.aws.target.name, endpoint,
                            tag.key, raw[:100], tag.expected, tag.metric)
        return tuple(sorted(values.items()))

    def _config(self, config_name: str | None) -> EndpointConfig:
        """Endpoint configs are immutable: describe each once."""
        if not config_name:
            return EndpointConfig({})
        if config_name not in self._configs:
            try:
                desc = self.aws.call("sagemaker", "DescribeEndpointConfig", EndpointConfigName=config_name)
            except ClientError as exc:
                if not _not_found(exc) and error_code(exc) != "ValidationException":
                    raise
                # A config may be deleted while its endpoint keeps running: types become unknown.
                log.warning("%s: endpoint config %s is gone: instance types unknown", self.aws.target.name,
                            config_name)
                return EndpointConfig({})
            self._configs[config_name] = EndpointConfig(
                {pv["VariantName"]: (pv.get("InstanceType"), pv.get("ServerlessConfig"))
                 for pv in desc.get("ProductionVariants", [])},
                asynchronous=bool(desc.get("AsyncInferenceConfig")))
        return self._configs[config_name]
