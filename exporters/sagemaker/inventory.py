"""Which endpoints exist: ListEndpoints every cycle; DescribeEndpoint / DescribeEndpointConfig / ListTags
only for new or changed endpoints (or every `inventory_interval`)."""

from __future__ import annotations

import logging
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from .aws import MAX_CONNECTIONS, Aws, describe_error, error_code, is_credentials_error
from .tags import numeric_tags

log = logging.getLogger(__name__)

DESCRIBE_WORKERS = MAX_CONNECTIONS  # concurrent Describe*/ListTags calls, one botocore connection each
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
    provisioned_concurrency: int = 0  # ProvisionedConcurrency: copies kept warm, billed whether used or not


@dataclass(frozen=True)
class Variant:
    name: str
    instance_type: str | None      # None: serverless, or the endpoint config is gone
    serverless: bool
    current_instances: int | None  # None for serverless variants
    desired_instances: int | None
    serverless_config: Serverless | None = None


@dataclass(frozen=True)
class Component:
    """An inference component: a model with reserved compute on an endpoint variant's instances."""
    name: str
    variant: str
    status: str
    model: str
    copies: int               # CurrentCopyCount
    accelerators: float       # per copy: NumberOfAcceleratorDevicesRequired
    cpu_cores: float          # per copy: NumberOfCpuCoresRequired
    memory_mb: float          # per copy: MinMemoryRequiredInMb
    last_modified: float


def _component(desc: dict) -> Component:
    spec = desc.get("Specification") or {}
    need = spec.get("ComputeResourceRequirements") or {}
    runtime = desc.get("RuntimeConfig") or {}
    return Component(desc["InferenceComponentName"], desc.get("VariantName", ""),
                     desc.get("InferenceComponentStatus", "Unknown"), str(spec.get("ModelName") or ""),
                     int(runtime.get("CurrentCopyCount", runtime.get("DesiredCopyCount", 0)) or 0),
                     float(need.get("NumberOfAcceleratorDevicesRequired") or 0),
                     float(need.get("NumberOfCpuCoresRequired") or 0), float(need.get("MinMemoryRequiredInMb") or 0),
                     desc["LastModifiedTime"].timestamp())


@dataclass(frozen=True)
class EndpointConfig:
    variants: dict                 # variant -> (instance type, ServerlessConfig or None)
    asynchronous: bool = False     # AsyncInferenceConfig present


def _serverless(raw: dict | None) -> Serverless | None:
    if not raw or raw.get("MemorySizeInMB") is None:
        return None
    concurrency = raw.get("MaxConcurrency")
    return Serverless(int(raw["MemorySizeInMB"]), None if concurrency is None else int(concurrency),
                      int(raw.get("ProvisionedConcurrency") or 0))


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
    components: tuple[Component, ...] = ()        # inference components, refreshed every cycle

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
        self._components: dict[str, tuple[Component, float]] = {}  # name -> (component, fetched at)
        self._components_denied = False
        self._component_endpoint: dict[str, str] = {}  # component name -> endpoint name

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
        selected = [s for s in summaries if self.name_regex is None or self.name_regex.search(s["EndpointName"])]
        seen = {s["EndpointName"] for s in selected}
        selected = [s for s in selected
                    if self._excluded.get(s["EndpointName"]) != s["LastModifiedTime"].timestamp()]
        stale = [s for s in selected if not self._fresh(s, now)]
        described = self._describe_all(stale)
        endpoints: list[Endpoint] = []
        problems = 0
        for summary in selected:
            name = summary["EndpointName"]
            cached = self._cache.get(name)
            if name not in described:
                endpoints.append(cached[0])
                continue
            endpoint = described[name]
            if isinstance(endpoint, (ClientError, BotoCoreError)):
                exc = endpoint
                if _not_found(exc):
                    log.debug("endpoint %s disappeared during the cycle", name)
                    continue
                if is_credentials_error(exc):
                    raise exc
                problems += 1
                log.warning("%s: endpoint %s: %s", self.aws.target.name, name, describe_error(exc))
                if cached:
                    endpoints.append(cached[0])
                continue
            modified = summary["LastModifiedTime"].timestamp()
            if not self._tags_match(endpoint):
                self._excluded[name] = modified
                self._cache.pop(name, None)
                continue
            self._excluded.pop(name, None)
            # the first description is dated up to half an interval back, so that later re-descriptions of a
            # fleet described at once spread over the interval instead of all falling in one cycle
            self._cache[name] = (endpoint, now - self._phase(name) if cached is None else now)
            endpoints.append(endpoint)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        for gone in set(self._excluded) - seen:
            del self._excluded[gone]
        if endpoints:
            by_endpoint, failed = self._inference_components(now)
            problems += failed
            endpoints = [replace(e, components=by_endpoint.get(e.name, ())) for e in endpoints]
        return endpoints, problems

    def _fresh(self, summary: dict, now: float) -> bool:
        """Described before, unchanged since, and re-described less than `refresh_interval` ago."""
        cached = self._cache.get(summary["EndpointName"])
        return bool(cached and cached[0].last_modified == summary["LastModifiedTime"].timestamp()
                    and cached[0].status == summary["EndpointStatus"] and now - cached[1] < self.refresh_interval)

    def _phase(self, name: str) -> float:
        """A fixed share of half the refresh interval, per endpoint name."""
        return (zlib.crc32(name.encode()) % 1000) / 1000 * self.refresh_interval / 2

    def _describe_all(self, summaries: list[dict]) -> dict[str, Endpoint | ClientError | BotoCoreError]:
        """Describe these endpoints, DESCRIBE_WORKERS at a time: name -> Endpoint, or the error describing it."""
        def one(summary: dict) -> Endpoint | ClientError | BotoCoreError:
            try:
                return self._describe(summary)
            except (ClientError, BotoCoreError) as exc:
                return exc
        if len(summaries) <= 1:
            return {s["EndpointName"]: one(s) for s in summaries}
        with ThreadPoolExecutor(max_workers=min(DESCRIBE_WORKERS, len(summaries)),
                                thread_name_prefix="sagemaker-describe") as pool:
            return dict(zip((s["EndpointName"] for s in summaries), pool.map(one, summaries)))

    def _inference_components(self, now: float) -> tuple[dict[str, tuple[Component, ...]], int]:
        """One ListInferenceComponents pass per cycle; DescribeInferenceComponent for new or changed ones."""
        if self._components_denied:
            return {}, 0
        summaries = []
        token = None
        try:
            while True:
                page = self.aws.call("sagemaker", "ListInferenceComponents", MaxResults=100,
                                     **({"NextToken": token} if token else {}))
                summaries += page.get("InferenceComponents", [])
                token = page.get("NextToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in ("AccessDeniedException", "AccessDenied"):
                self._components_denied = True  # an older IAM policy: go on without inference components
                log.warning("%s: ListInferenceComponents denied (%s): inference components are not exported; "
                            "grant sagemaker:ListInferenceComponents and DescribeInferenceComponent",
                            self.aws.target.name, describe_error(exc))
                return {}, 1
            if is_credentials_error(exc):
                raise
            log.warning("%s: ListInferenceComponents: %s", self.aws.target.name, describe_error(exc))
            known = [{"InferenceComponentName": n, "EndpointName": e} for n, e in self._component_endpoint.items()]
            return self._group(known), 1  # keep the last known components until the next pass works
        failed = 0
        for summary in summaries:
            name = summary["InferenceComponentName"]
            cached = self._components.get(name)
            modified = summary["LastModifiedTime"].timestamp()
            if cached and cached[0].last_modified == modified and now - cached[1] < self.refresh_interval:
                continue
            try:
                desc = self.aws.call("sagemaker", "DescribeInferenceComponent", InferenceComponentName=name)
            except (ClientError, BotoCoreError) as exc:
                if is_credentials_error(exc):
                    raise
                failed += 1
                log.warning("%s: inference component %s: %s", self.aws.target.name, name, describe_error(exc))
                continue
            self._components[name] = (_component(desc), now)
            self._component_endpoint[name] = summary["EndpointName"]
        live = {s["InferenceComponentName"] for s in summaries}
        for gone in set(self._components) - live:
            del self._components[gone]
            self._component_endpoint.pop(gone, None)
        return self._group(summaries), failed

    def _group(self, summaries: list[dict]) -> dict[str, tuple[Component, ...]]:
        grouped: dict[str, list[Component]] = {}
        for summary in summaries:
            cached = self._components.get(summary["InferenceComponentName"])
            if cached:
                grouped.setdefault(summary["EndpointName"], []).append(cached[0])
        return {e: tuple(sorted(cs, key=lambda c: c.name)) for e, cs in grouped.items()}

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
