"""What the SageMaker exporter asks CloudWatch for: namespaces, metrics, statistics and their series names."""

from __future__ import annotations

SAGEMAKER_NS = "AWS/SageMaker"
INSTANCE_NS = "/aws/sagemaker/Endpoints"
COMPONENT_NS = "/aws/sagemaker/InferenceComponents"

# counter series -> (namespace, metric, stat, scale)
COUNTERS = {
    "invocations": (SAGEMAKER_NS, "Invocations", "Sum", 1.0),
    "invocation_4xx_errors": (SAGEMAKER_NS, "Invocation4XXErrors", "Sum", 1.0),
    "invocation_5xx_errors": (SAGEMAKER_NS, "Invocation5XXErrors", "Sum", 1.0),
    "invocation_model_errors": (SAGEMAKER_NS, "InvocationModelErrors", "Sum", 1.0),
    "model_latency_sum": (SAGEMAKER_NS, "ModelLatency", "Sum", 1e-6),          # microseconds -> seconds
    "model_latency_count": (SAGEMAKER_NS, "ModelLatency", "SampleCount", 1.0),
    "overhead_latency_sum": (SAGEMAKER_NS, "OverheadLatency", "Sum", 1e-6),
    "overhead_latency_count": (SAGEMAKER_NS, "OverheadLatency", "SampleCount", 1.0),
}
WITHIN_OBJECTIVE = "model_latency_within_objective"  # counter from TC(:objective in microseconds)
# inference components: the same counters, by InferenceComponentName (keys end with the component's name)
COMPONENT_COUNTERS = {f"component_{series}": spec for series, spec in COUNTERS.items()
                      if not series.startswith("overhead")}
# utilization normalised by CloudWatch to the component's reserved resources, 0-100
COMPONENT_UTILIZATION = {"cpu": "CPUUtilizationNormalized", "memory": "MemoryUtilizationNormalized",
                         "gpu": "GPUUtilizationNormalized", "gpu_memory": "GPUMemoryUtilizationNormalized"}
# serverless variants with provisioned concurrency: the requests served on demand instead (billed at that rate)
SPILLOVER = "serverless_spillover_invocations"
SPILLOVER_METRIC = (SAGEMAKER_NS, "ServerlessProvisionedConcurrencySpilloverInvocations", "Sum", 1.0)
COUNTER_SERIES = {*COUNTERS, WITHIN_OBJECTIVE, *COMPONENT_COUNTERS, SPILLOVER}
SERVERLESS_COUNTERS = ("serverless_compute_seconds", "serverless_list_cost_dollars", "serverless_cost_dollars")
LATENCIES = {"model_latency": "ModelLatency", "overhead_latency": "OverheadLatency"}
DEFAULT_STATISTICS = ["p50", "p95", "p99"]
# asynchronous endpoints: gauge series -> (metric, stat, scale, per variant?); the backlog is per endpoint
ASYNC = {
    "async_backlog_size": ("ApproximateBacklogSize", "Average", 1.0, False),
    "async_backlog_without_capacity": ("HasBacklogWithoutCapacity", "Maximum", 1.0, False),
    "async_oldest_request_age_seconds": ("ApproximateAgeOfOldestRequest", "Maximum", 1.0, False),
    "async_time_in_backlog_seconds": ("TimeInBacklog", "Average", 1e-3, True),     # milliseconds -> seconds
}
# utilization gauge -> (metric, divisor kind): cpu per vCPU, gpu per GPU, others are 0-100 already
UTILIZATION = {
    "cpu": ("CPUUtilization", "vcpu"),
    "memory": ("MemoryUtilization", None),
    "disk": ("DiskUtilization", None),
    "gpu": ("GPUUtilization", "gpu"),
    "gpu_memory": ("GPUMemoryUtilization", "gpu"),
}


def within_stat(objective_seconds: float) -> str:
    """CloudWatch's trimmed count of ModelLatency samples <= the objective: TC(:<microseconds>)."""
    micros = f"{objective_seconds * 1e6:.3f}".rstrip("0").rstrip(".")
    return f"TC(:{micros})"
