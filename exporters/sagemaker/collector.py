"""The scrape side: turns the pollers' snapshots into metric families. Never calls AWS."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .config import quantile_label
from .poller import Poller
from .series import ASYNC, COMPONENT_COUNTERS, COMPONENT_UTILIZATION, LATENCIES, UTILIZATION
from .tags import NUMERIC_TAGS

log = logging.getLogger(__name__)

COUNTER_HELP = {
    "invocations": "Requests sent to the variant (CloudWatch Invocations Sum), added once per settled period.",
    "invocation_4xx_errors": "Requests that returned 4xx (Invocation4XXErrors Sum), per settled period.",
    "invocation_5xx_errors": "Requests that returned 5xx (Invocation5XXErrors Sum), per settled period.",
    "invocation_model_errors": "Requests whose model returned an error (InvocationModelErrors Sum).",
    "model_latency_within_objective": "Requests whose ModelLatency was at most the endpoint's latency objective "
                                      "(CloudWatch TC(:objective) statistic), added once per settled period.",
    "serverless_compute_seconds": "Billed compute time of a serverless variant: requests x mean ModelLatency "
                                  "rounded up to the millisecond, per settled period.",
    "serverless_cost_dollars": "Estimated cost of a serverless variant after the configured discount (billed "
                               "seconds x memory GB x price per GB-second, plus any per-request price, plus "
                               "provisioned concurrency x memory GB x seconds provisioned x its price).",
    "serverless_list_cost_dollars": "Estimated cost of a serverless variant at list price.",
    "serverless_spillover_invocations": "Requests to a serverless variant with provisioned concurrency that "
                                        "spilled over to on-demand capacity (ServerlessProvisionedConcurrency"
                                        "SpilloverInvocations Sum), per settled period.",
}
LATENCY_HELP = {
    "model_latency": "Time the model took to respond (CloudWatch ModelLatency, microseconds converted to seconds). "
                     "Quantiles: newest settled period; _sum/_count: counters of settled periods.",
    "overhead_latency": "SageMaker overhead added to each request (CloudWatch OverheadLatency, in seconds). "
                        "Quantiles: newest settled period; _sum/_count: counters of settled periods.",
}
ASYNC_HELP = {
    "async_backlog_size": "Requests queued on an asynchronous endpoint (ApproximateBacklogSize, average of the "
                          "newest settled period).",
    "async_backlog_without_capacity": "1 when an asynchronous endpoint has queued requests and no instance to "
                                      "serve them (HasBacklogWithoutCapacity, maximum of the newest period).",
    "async_oldest_request_age_seconds": "Age of the oldest queued request of an asynchronous endpoint "
                                        "(ApproximateAgeOfOldestRequest).",
    "async_time_in_backlog_seconds": "Mean time requests waited in the backlog (TimeInBacklog, milliseconds "
                                     "converted to seconds), newest settled period.",
}
UTILIZATION_HELP = {
    "cpu": "CPU utilization per instance, 0-1 (CPUUtilization / 100 / vCPUs), newest settled period.",
    "memory": "Memory utilization per instance, 0-1 (MemoryUtilization / 100), newest settled period.",
    "disk": "Disk utilization per instance, 0-1 (DiskUtilization / 100), newest settled period.",
    "gpu": "GPU utilization per instance, 0-1 (GPUUtilization / 100 / GPUs), newest settled period.",
    "gpu_memory": "GPU memory utilization per instance, 0-1 (GPUMemoryUtilization / 100 / GPUs).",
}


class SageMakerCollector(Collector):
    def __init__(self, pollers: Sequence[Poller], fleets: Sequence = ()):
        self.fixed = list(pollers)
        self.fleets = list(fleets)  # LinkedAccounts: pollers of linked source accounts, added as they are found

    @property
    def pollers(self) -> list[Poller]:
        return self.fixed + [p for fleet in self.fleets for p in fleet.pollers]

    def describe(self) -> Iterable[Metric]:
        return []

    def cache_key(self) -> tuple:
        """Changes when a poll cycle publishes a snapshot or counts an AWS call; the HTTP layer
        reuses the encoded text until then, so a scrape of 1,000 endpoints costs no formatting."""
        return tuple((id(p.snapshot), repr(p.aws.stats.snapshot())) for p in self.pollers)

    def collect(self) -> Iterable[Metric]:
        ep_info = Metric("sagemaker_endpoint_info", "SageMaker endpoint, its status and its tags (tag_<key>); "
                         "inventory=\"cloudwatch_link\": a linked source account's endpoint, known from its "
                         "CloudWatch metrics only (status Unknown, no instance type, tags or cost).", "gauge")
        tag_gauges = {t.key: Metric(t.metric, t.help, "gauge") for t in NUMERIC_TAGS}
        var_info = Metric("sagemaker_variant_info", "Production variant and its instance type "
                          "(serverless for serverless variants).", "gauge")
        sls_memory = Metric("sagemaker_variant_serverless_memory_bytes", "Memory of a serverless variant "
                            "(ServerlessConfig MemorySizeInMB), what its compute is billed by.", "gauge")
        sls_concurrency = Metric("sagemaker_variant_serverless_max_concurrency", "MaxConcurrency of a "
                                 "serverless variant.", "gauge")
        sls_provisioned = Metric("sagemaker_variant_serverless_provisioned_concurrency", "ProvisionedConcurrency "
                                 "of a serverless variant: copies kept warm, billed whether used or not.", "gauge")
        instances = Metric("sagemaker_variant_instances", "Current instance count of the variant.", "gauge")
        desired = Metric("sagemaker_variant_desired_instances", "Desired instance count of the variant.", "gauge")
        counters = {s: Metric(f"sagemaker_{s}", COUNTER_HELP[s], "counter") for s in COUNTER_HELP}
        latencies = {s: Metric(f"sagemaker_{s}_seconds", LATENCY_HELP[s], "summary") for s in LATENCIES}
        utilization = {s: Metric(f"sagemaker_instance_{s}_utilization_ratio", UTILIZATION_HELP[s], "gauge")
                       for s in UTILIZATION}
        backlog = {s: Metric(f"sagemaker_{s}", ASYNC_HELP[s], "gauge") for s in ASYNC}
        ic_info = Metric("sagemaker_inference_component_info", "Inference component on the variant's instances, "
                         "its status and model.", "gauge")
        ic_copies = Metric("sagemaker_inference_component_copies", "Current copy count of the inference component.",
                           "gauge")
        ic_counters = {s: Metric(f"sagemaker_inference_component_{s[len('component_'):]}",
                                 COUNTER_HELP.get(s[len('component_'):], "Inference component counter.") +
                                 " By InferenceComponentName.", "counter")
                       for s in COMPONENT_COUNTERS if not s.startswith("component_model_latency")}
        ic_latency = Metric("sagemaker_inference_component_model_latency_seconds", "ModelLatency of the inference "
                            "component in seconds: _sum/_count counters of settled periods.", "summary")
        ic_util = {s: Metric(f"sagemaker_inference_component_{s}_utilization_ratio", f"{s.replace('_', ' ').upper()} "
                             "utilization of the component's reserved resources, 0-1 (CloudWatch *Normalized).",
                             "gauge") for s in COMPONENT_UTILIZATION}
        ic_share = Metric("sagemaker_inference_component_capacity_share_ratio", "Share of the variant's instance "
                          "capacity (GPUs, else vCPUs) reserved by the component (copies x requirements); "
                          "inference_component=\"(idle)\" is the unreserved rest.", "gauge")
        ic_cost = Metric("sagemaker_inference_component_hourly_cost_dollars", "The variant's hourly cost split by "
                         "capacity share; with (idle), the parts add up to sagemaker_variant_hourly_cost_dollars.",
                         "gauge")
        cost = Metric("sagemaker_variant_hourly_cost_dollars",
                      "Price per instance-hour after the configured discount, times the current instance count.",
                      "gauge")
        list_cost = Metric("sagemaker_variant_hourly_list_cost_dollars",
                           "On-demand list price per instance-hour times the current instance count.", "gauge")
        data_ts = Metric("sagemaker_data_timestamp_seconds",
                         "End of the newest settled CloudWatch period exported for the variant.", "gauge")
        requests = Metric("mlscope_cloudwatch_requests", "AWS API calls made by the exporter.", "counter")
        metrics = Metric("mlscope_cloudwatch_metrics_requested",
                         "What CloudWatch bills for, by query kind: each metric requested by GetMetricData, "
                         "each GetMetricStatistics request.",
                         "counter")
        errors = Metric("mlscope_cloudwatch_errors", "Failed AWS calls (after retries) and problem answers.",
                        "counter")
        missing = Metric("mlscope_sagemaker_price_missing", "Cost lookups that found no price for the "
                         "instance type (no cost series is exported for it).", "counter")
        invalid = Metric("mlscope_sagemaker_invalid_tags", "Endpoint descriptions with a numeric mlscope:* tag "
                         "whose value is invalid (no series is exported for it).", "counter")

        seen: set[tuple[str, str, str]] = set()
        totals: dict[str, dict] = defaultdict(lambda: defaultdict(int))
        for poller in self.pollers:
            snap = poller.snapshot
            place = {"account": snap.account, "region": snap.region}
            linked = {"inventory": "cloudwatch_link"} if poller.aws.target.linked else {}
            stats = poller.aws.stats.snapshot()
            for name, by_key in stats.items():
                for key, n in by_key.items():
                    totals[name][(snap.account, snap.region, key)] += n

            c, g = snap.counters, snap.gauges
            quantiles = [quantile_label(stat) for stat in poller.statistics]
            for ep in snap.endpoints:
                if (snap.account, snap.region, ep.name) in seen:  # two pollers on one account and region
                    log.debug("duplicate endpoint %s in %s/%s skipped", ep.name, snap.account, snap.region)
                    continue
                seen.add((snap.account, snap.region, ep.name))
                ep_labels = {**place, "endpoint": ep.name}
                ep_info.add_sample("sagemaker_endpoint_info", {**ep_labels, "status": ep.status, **linked,
                                                                **ep.tag_labels}, 1)
                for key, number in ep.numbers:
                    tag_gauges[key].add_sample(tag_gauges[key].name, ep_labels, number)
                for series, (_, _, _, per_variant) in ASYNC.items():
                    for v in ep.variants if per_variant else ep.variants[:1]:
                        val = g.get((ep.name, v.name, series))
                        if val is not None:
                            labels = {**ep_labels, "variant": v.name} if per_variant else ep_labels
                            backlog[series].add_sample(backlog[series].name, labels, val)
                for v in ep.variants:
                    labels = {**ep_labels, "variant": v.name}
                    itype = "serverless" if v.serverless else (v.instance_type or "unknown")
                    var_info.add_sample("sagemaker_variant_info", {**labels, "instance_type": itype}, 1)
                    if v.current_instances is not None:
                        instances.add_sample("sagemaker_variant_instances", labels, v.current_instances)
                    if v.serverless_config is not None:
                        sls_memory.add_sample(sls_memory.name, labels, v.serverless_config.memory_mb * 1024 * 1024)
                        if v.serverless_config.max_concurrency is not None:
                            sls_concurrency.add_sample(sls_concurrency.name, labels,
                                                       v.serverless_config.max_concurrency)
                        if v.serverless_config.provisioned_concurrency:
                            sls_provisioned.add_sample(sls_provisioned.name, labels,
                                                       v.serverless_config.provisioned_concurrency)
                    if v.desired_instances is not None:
                        desired.add_sample("sagemaker_variant_desired_instances", labels, v.desired_instances)
                    key = (ep.name, v.name)
                    for series, metric in counters.items():
                        val = c.get(key + (series,))
                        if val is not None:
                            metric.add_sample(f"sagemaker_{series}_total", labels, val)
                    for series, metric in latencies.items():
                        name = metric.name
                        for q in quantiles:
                            val = g.get(key + (series, q))
                            if val is not None:
                                metric.add_sample(name, {**labels, "quantile": q}, val)
                        total, count = c.get(key + (f"{series}_sum",)), c.get(key + (f"{series}_count",))
                        if total is not None and count is not None:
                            metric.add_sample(f"{name}_sum", labels, total)
                            metric.add_sample(f"{name}_count", labels, count)
                    for series, metric in utilization.items():
                        val = g.get(key + (series,))
                        if val is not None:
                            metric.add_sample(metric.name, labels, val)
                    priced = snap.costs.get(key)
                    if priced is not None:
                        cost.add_sample(cost.name, {**labels, "instance_type": priced.instance_type}, priced.hourly)
                        list_cost.add_sample(list_cost.name, {**labels, "instance_type": priced.instance_type},
                                             priced.list_hourly)
                    for comp in (c for c in ep.components if c.variant == v.name):
                        clabels = {**labels, "inference_component": comp.name}
                        ic_info.add_sample(ic_info.name, {**clabels, "status": comp.status, "model": comp.model}, 1)
                        ic_copies.add_sample(ic_copies.name, clabels, comp.copies)
                        for series, metric in ic_counters.items():
                            val = c.get(key + (series, comp.name))
                            if val is not None:
                                metric.add_sample(f"{metric.name}_total", clabels, val)
                        total = c.get(key + ("component_model_latency_sum", comp.name))
                        count = c.get(key + ("component_model_latency_count", comp.name))
                        if total is not None and count is not None:
                            ic_latency.add_sample(f"{ic_latency.name}_sum", clabels, total)
                            ic_latency.add_sample(f"{ic_latency.name}_count", clabels, count)
                        for series, metric in ic_util.items():
                            val = g.get(key + (f"component_{series}_utilization", comp.name))
                            if val is not None:
                                metric.add_sample(metric.name, clabels, val)
                    for name, (share, dollars) in snap.component_costs.get(key, {}).items():
                        clabels = {**labels, "inference_component": name}
                        ic_share.add_sample(ic_share.name, clabels, share)
                        ic_cost.add_sample(ic_cost.name, clabels, dollars)
                    ts = snap.data_ts.get(key)
                    if ts is not None:
                        data_ts.add_sample(data_ts.name, labels, ts)

        def where(k: tuple) -> dict:
            return {"account": k[0], "region": k[1]}

        for k, n in sorted(totals["requests"].items()):
            requests.add_sample("mlscope_cloudwatch_requests_total", {**where(k), "api": k[2]}, n)
        for k, n in sorted(totals["metrics_requested"].items()):
            metrics.add_sample("mlscope_cloudwatch_metrics_requested_total", {**where(k), "kind": k[2]}, n)
        for k, n in sorted(totals["errors"].items()):
            errors.add_sample("mlscope_cloudwatch_errors_total", {**where(k), "api": k[2][0], "code": k[2][1]}, n)
        for k, n in sorted(totals["price_missing"].items()):
            missing.add_sample("mlscope_sagemaker_price_missing_total", {**where(k), "instance_type": k[2]}, n)
        for k, n in sorted(totals["invalid_tags"].items()):
            invalid.add_sample("mlscope_sagemaker_invalid_tags_total", {**where(k), "tag": k[2]}, n)
        yield from (ep_info, *tag_gauges.values(), var_info, sls_memory, sls_concurrency, sls_provisioned,
                    instances, desired, *counters.values(),
                    *latencies.values(), *utilization.values(), *backlog.values(), ic_info, ic_copies,
                    *ic_counters.values(), ic_latency, *ic_util.values(), ic_share, ic_cost, cost, list_cost, data_ts, requests, metrics, errors, missing,
                    invalid)
