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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# us-east-1 list prices (AWS SageMaker pricing page, Serverless Inference): $0.00002 per second for 1 GB
# (1,024 MB), proportional to memory; no per-request charge (data processed is billed per GB instead).
PRICE_PER_GB_SECOND = 0.00002
PRICE_PER_REQUEST = 0.0


@dataclass(frozen=True)
class Billed:
    seconds: float
    dollars: float


@dataclass(frozen=True)
class ServerlessPrices:
    per_gb_second: float = PRICE_PER_GB_SECOND
    per_request: float = PRICE_PER_REQUEST

    def bill(self, latency_sums_us: dict[float, float], counts: dict[float, float], memory_gb: float) -> Billed:
        """Billed seconds and list dollars of the periods given ({period start: ModelLatency Sum / SampleCount})."""
        seconds = requests = 0.0
        for start, n in counts.items():
            if n <= 0:
                continue
            mean_ms = latency_sums_us.get(start, 0.0) / n / 1000
            seconds += n * math.ceil(round(mean_ms, 9)) / 1000
            requests += n
        return Billed(seconds, seconds * memory_gb * self.per_gb_second + requests * self.per_request)
