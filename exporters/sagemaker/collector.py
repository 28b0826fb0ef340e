"""The scrape side: turns the pollers' snapshots into metric families. Never calls AWS."""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .config import quantile_label
from .poller import LATENCIES, UTILIZATION, Poller

log = logging.getLogger(__name__)

COUNTER_HELP = {
    "invocations": "Requests sent to the variant (CloudWatch Invocations Sum), added once per settled period.",
    "invocation_4xx_errors": "Requests that returned 4xx (Invocation4XXErrors Sum), per settled period.",
    "invocation_5xx_errors": "Requests that returned 5xx (Invocation5XXErrors Sum), per settled period.",
    "invocation_model_errors": "Requests whose model returned an error (InvocationModelErrors Sum).",
}
LATENCY_HELP = {
    "model_latency": "Time the model took to respond (CloudWatch ModelLatency, microseconds converted to seconds). "
                     "Quantiles: newest settled period; _sum/_count: counters of settled periods.",
    "overhead_latency": "SageMaker overhead added to each request (CloudWatch OverheadLatency, in seconds). "
                        "Quantiles: newest settled period; _sum/_count: counters of settled periods.",
}
UTILIZATION_HELP = {
    "cpu": "CPU utilization per instance, 0-1 (CPUUtilization / 100 / vCPUs), newest settled period.",
    "memory": "Memory utilization per instance, 0-1 (MemoryUtilization / 100), newest settled period.",
    "disk": "Disk utilization per instance, 0-1 (DiskUtilization / 100), newest settled period.",
    "gpu": "GPU utilization per instance, 0-1 (GPUUtilization / 100 / GPUs), newest settled period.",
    "gpu_memory": "GPU memory utilization per instance, 0-1 (GPUMemoryUtilization / 100 / GPUs).",
}
BASE = ("region", "endpoint", "variant")


class SageMakerCollector(Collector):
    def __init__(self, pollers: Sequence[Poller]):
        self.pollers = list(pollers)

    def describe(self) -> Iterable[Metric]:
        return []

    def cache_key(self) -> tuple:
        """Changes when a poll cycle publishes a snapshot or counts an AWS call; the HTTP layer
        reuses the encoded text until then, so a scrape of 1,000 endpoints costs no formatting."""
        return tuple((id(p.snapshot), repr(p.aws.stats.snapshot())) for p in self.pollers)

    def collect(self) -> Iterable[Metric]:
        ep_info = Metric("sagemaker_endpoint_info", "SageMaker endpoint, its status and its tags (tag_<key>).",
                         "gauge")
        var_info = Metric("sagemaker_variant_info", "Production variant and its instance type "
                          "(serverless for serverless variants).", "gauge")
        instances = Metric("sagemaker_variant_instances", "Current instance count of the variant.", "gauge")
        desired = Metric("sagemaker_variant_desired_instances", "Desired instance count of the variant.", "gauge")
        counters = {s: Metric(f"sagemaker_{s}", COUNTER_HELP[s], "counter") for s in COUNTER_HELP}
        latencies = {s: Metric(f"sagemaker_{s}_seconds", LATENCY_HELP[s], "summary") for s in LATENCIES}
        utilization = {s: Metric(f"sagemaker_instance_{s}_utilization_ratio", UTILIZATION_HELP[s], "gauge")
                       for s in UTILIZATION}
        cost = Metric("sagemaker_variant_hourly_cost_dollars",
                      "On-demand price per instance-hour times the current instance count.", "gauge")
        data_ts = Metric("sagemaker_data_timestamp_seconds",
                         "End of the newest settled CloudWatch period exported for the variant.", "gauge")
        requests = Metric("mlscope_cloudwatch_requests", "AWS API calls made by the exporter.", "counter")
        metrics = Metric("mlscope_cloudwatch_metrics_requested",
                         "CloudWatch metrics requested by GetMetricData (what CloudWatch bills for).", "counter")
        errors = Metric("mlscope_cloudwatch_errors", "Failed AWS calls (after retries) and problem answers.",
                        "counter")
        missing = Metric("mlscope_sagemaker_price_missing", "Cost lookups that found no price for the "
                         "instance type (no cost series is exported for it).", "counter")

        seen: set[tuple[str, str]] = set()
        req_total: dict = {}
        met_total: dict = {}
        err_total: dict = {}
        miss_total: dict = {}
        for poller in self.pollers:
            snap = poller.snapshot
            region = snap.region
            reqs, mets, errs, miss = poller.aws.stats.snapshot()
            for api, n in reqs.items():
                req_total[(region, api)] = req_total.get((region, api), 0) + n
            met_total[region] = met_total.get(region, 0) + mets
            for (api, code), n in errs.items():
                err_total[(region, api, code)] = err_total.get((region, api, code), 0) + n
            for itype, n in miss.items():
                miss_total[(region, itype)] = miss_total.get((region, itype), 0) + n

            c, g = snap.counters, snap.gauges
            quantiles = [quantile_label(stat) for stat in poller.statistics]
            for ep in snap.endpoints:
                if (region, ep.name) in seen:  # the same name in two accounts of one region: first wins
                    log.debug("duplicate endpoint %s in %s skipped", ep.name, region)
                    continue
                seen.add((region, ep.name))
                ep_info.add_sample("sagemaker_endpoint_info",
                                   {"region": region, "endpoint": ep.name, "status": ep.status, **ep.tag_labels}, 1)
                for v in ep.variants:
                    labels = {"region": region, "endpoint": ep.name, "variant": v.name}
                    itype = "serverless" if v.serverless else (v.instance_type or "unknown")
                    var_info.add_sample("sagemaker_variant_info", {**labels, "instance_type": itype}, 1)
                    if v.current_instances is not None:
                        instances.add_sample("sagemaker_variant_instances", labels, v.current_instances)
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
                        cost.add_sample(cost.name, {**labels, "instance_type": priced[0]}, priced[1])
                    ts = snap.data_ts.get(key)
                    if ts is not None:
                        data_ts.add_sample(data_ts.name, labels, ts)

        for (region, api), n in sorted(req_total.items()):
            requests.add_sample("mlscope_cloudwatch_requests_total", {"region": region, "api": api}, n)
        for region, n in sorted(met_total.items()):
            metrics.add_sample("mlscope_cloudwatch_metrics_requested_total", {"region": region}, n)
        for (region, api, code), n in sorted(err_total.items()):
            errors.add_sample("mlscope_cloudwatch_errors_total", {"region": region, "api": api, "code": code}, n)
        for (region, itype), n in sorted(miss_total.items()):
            missing.add_sample("mlscope_sagemaker_price_missing_total", {"region": region, "instance_type": itype}, n)
        yield from (ep_info, var_info, instances, desired, *counters.values(), *latencies.values(),
                    *utilization.values(), cost, data_ts, requests, metrics, errors, missing)
