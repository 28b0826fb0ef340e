"""What a serverless variant is billed for, estimated from CloudWatch.

SageMaker Serverless Inference bills compute per request by the millisecond, times the configured memory
(MemorySizeInMB), at a price per GB-second; there is no per-instance charge. CloudWatch only gives each
period's ModelLatency Sum and SampleCount (microseconds), not each request's duration, so the exporter bills
each period's requests at the mean latency rounded up to the millisecond:

    billed seconds = SampleCount x ceil(Sum / SampleCount / 1000 us) / 1000
    cost           = billed seconds x memory GB x price per GB-second + SampleCount x price per request

Error: AWS rounds each request up on its own: sum(ceil(x_i)) lies in [sum(x_i), sum(x_i) + n) ms, and so does
n x ceil(mean): the two differ by less than 1 ms per request (under 2% at a 50 ms mean latency, under 0.1% at
1 s). ModelLatency leaves out SageMaker's overhead and cold starts (ModelSetupTime), which AWS bills as well,
and data processed (per GB in and out) is not in CloudWatch at all, so the estimate is a lower bound.

Provisioned concurrency (ServerlessConfig.ProvisionedConcurrency = P) adds a charge for keeping P copies warm,
used or not, and bills the requests they serve at a lower duration rate; requests beyond P spill over to
on-demand capacity (CloudWatch ServerlessProvisionedConcurrencySpilloverInvocations) at the on-demand rate:

    provisioned cost = P x memory GB x seconds provisioned x provisioned price per GB-second
    compute cost     = billed seconds x memory GB x (served by P: provisioned inference price;
                                                     spill-over: on-demand price) + requests x price per request

Each period's billed seconds are split between the two rates by its spill-over share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# us-east-1 list prices (AWS SageMaker pricing page, Serverless Inference): $0.00002 per second for 1 GB
# (1,024 MB), proportional to memory; no per-request charge (data processed is billed per GB instead).
PRICE_PER_GB_SECOND = 0.00002
PRICE_PER_REQUEST = 0.0
# Provisioned concurrency, us-east-1 (docs/sagemaker-exporter.md: where they come from and how sure they are):
# per GB-second provisioned, and per GB-second of inference on provisioned concurrency.
PROVISIONED_PRICE_PER_GB_SECOND = 0.0000048
PROVISIONED_INFERENCE_PRICE_PER_GB_SECOND = 0.000014


@dataclass(frozen=True)
class Billed:
    seconds: float
    dollars: float


@dataclass(frozen=True)
class ServerlessPrices:
    per_gb_second: float = PRICE_PER_GB_SECOND
    per_request: float = PRICE_PER_REQUEST
    provisioned_per_gb_second: float = PROVISIONED_PRICE_PER_GB_SECOND
    provisioned_inference_per_gb_second: float = PROVISIONED_INFERENCE_PRICE_PER_GB_SECOND

    def bill(self, latency_sums_us: dict[float, float], counts: dict[float, float], memory_gb: float,
             spillover: dict[float, float] | None = None, provisioned: int = 0) -> Billed:
        """Billed seconds and list dollars of the periods given ({period start: ModelLatency Sum / SampleCount /
        spill-over invocations}); with provisioned concurrency, the requests that did not spill over are billed
        at the provisioned inference rate."""
        seconds = dollars = requests = 0.0
        for start, n in counts.items():
            if n <= 0:
                continue
            mean_ms = latency_sums_us.get(start, 0.0) / n / 1000
            per_request = math.ceil(round(mean_ms, 9)) / 1000
            on_demand = min(n, (spillover or {}).get(start, 0.0)) if provisioned else n
            seconds += n * per_request
            dollars += per_request * memory_gb * ((n - on_demand) * self.provisioned_inference_per_gb_second
                                                  + on_demand * self.per_gb_second)
            requests += n
        return Billed(seconds, dollars + requests * self.per_request)

    def provisioned(self, concurrency: int, memory_gb: float, seconds: float) -> float:
        """List dollars of keeping `concurrency` copies of `memory_gb` warm for `seconds`, used or not."""
        return concurrency * memory_gb * seconds * self.provisioned_per_gb_second
