"""The lean exposition encoder (mlscope.textformat) writes what prometheus_client writes, byte for byte.

On every exporter's real output (host with both backends and a hostile textfile, GPU in both naming modes,
SageMaker polled from moto with hostile tags) and on edge cases: escaping, NaN/Inf, every metric type,
timestamps, exemplars, names that need escaping, and caches that start over.
"""

from __future__ import annotations

import math
import random
import time

import pytest
from prometheus_client import exposition as lib_text
from prometheus_client.core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily, Metric, StateSetMetricFamily,
                                    SummaryMetricFamily)
from prometheus_client.openmetrics import exposition as lib_om
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Exemplar, NativeHistogram, Sample, Timestamp
from prometheus_client.utils import floatToGoString

from helpers import promtool_check_metrics
from test_host import assert_promtool_clean
from mlscope import textformat
from mlscope.health import Health, ScrapeCollector
from mlscope.settings import COMMON_SETTINGS, resolve
from mlscope.textformat import choose_encoder, encode_openmetrics, encode_text, go_float

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends
TEXT_ACCEPT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # Prometheus with the OpenMetrics scrape off
HOSTILE = 'say "hi"\\ C:\\path\\ and\na new line, ünïcødé ✓'


class Families:
    """Families collected once, in the shape of a registry, so both encoders see the very same samples."""

    def __init__(self, metrics: list[Metric]):
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def collected(collectors) -> Families:
    return Families([metric for collector in collectors for metric in collector.collect()])


def normalised(families) -> list[tuple]:
    """What a family means: name, type, help, unit and its samples (NaN compared as NaN)."""
    def value(v):
        return "NaN" if v is not None and math.isnan(v) else v
    return [(f.name, f.type, f.documentation, f.unit,
             [(s.name, dict(s.labels), value(s.value), None if s.timestamp is None else float(s.timestamp))
              for s in f.samples]) for f in families]


def assert_identical_to_prometheus_client(families: Families, read_back: bool = True) -> tuple[bytes, bytes]:
    text, om = encode_text(families), encode_openmetrics(families)
    assert text == lib_text.generate_latest(families)
    assert om == lib_om.generate_latest(families)
    assert encode_text(families) == text and encode_openmetrics(families) == om  # the cached second pass too
    if read_back:  # prometheus_client's own OpenMetrics parser reads back what the collectors produced
        assert normalised(parse_om(om.decode())) == normalised(lib_om_parsed(families))
    return text, om


def lib_om_parsed(families: Families) -> list[Metric]:
    """The collectors' families as OpenMetrics defines them (values as floats; what the parser gives back)."""
    out = []
    for f in families.collect():
        metric = Metric(f.name, f.documentation, f.type, f.unit)
        metric.samples = [Sample(s.name, s.labels, None if s.value is None else float(s.value), s.timestamp,
                                 s.exemplar, s.native_histogram) for s in f.samples]
        out.append(metric)
    return out


# ---- every exporter's real output ----

def host_families(tmp_path, backend: str) -> Families:
    from mlscope import host
    textfiles = tmp_path / "textfile"
    textfiles.mkdir(exist_ok=True)
    (textfiles / "hostile.prom").write_text(
        "# HELP batch_job_info A job; help with a \\\\ backslash and a \\n newline.\n"
        "# TYPE batch_job_info gauge\n"
        'batch_job_info{job="say \\"hi\\"",path="C:\\\\tmp\\\\",note="two\\nlines",empty=""} 1\n'
        "batch_job_seconds NaN\nbatch_job_limit +Inf\nbatch_job_floor -Inf\nbatch_job_big 123456789012\n")
    cfg = resolve([*COMMON_SETTINGS, *host.SETTINGS], {"backend": backend, "textfile_directory": str(textfiles)})
    health = Health()
    parts = host.SPEC.build(cfg, health)
    collectors = [ScrapeCollector(n, c, health) for n, c in parts.scrape.items()] + parts.direct + [health]
    for collector in collectors:  # a first scrape, so rates and self-metrics have values
        list(collector.collect())
    return collected(collectors)


@pytest.mark.parametrize("backend", ["proc", "psutil"])
def test_host_exporter_output_is_byte_identical(tmp_path, backend):
    text, _ = assert_identical_to_prometheus_client(host_families(tmp_path, backend))
    assert b'batch_job_info{empty="",job="say \\"hi\\"",note="two\\nlines",path="C:\\\\tmp\\\\"} 1.0\n' in text
    assert b"batch_job_seconds NaN\n" in text and b"batch_job_limit +Inf\n" in text
    assert b"batch_job_floor -Inf\n" in text and b"batch_job_big 1.23456789012e+11\n" in text
    if backend == "proc":
        assert b'node_cpu_seconds_total{cpu="0",mode="idle"} ' in text


@pytest.mark.parametrize("names", ["mlscope", "both"])
def test_gpu_exporter_output_is_byte_identical(names):
    from mlscope import gpu
    from mlscope.gpu import fakenvml
    from mlscope.gpu.sampler import Sampler
    cfg = resolve([*COMMON_SETTINGS, *gpu.SETTINGS], {"simulate": 2, "names": names})
    health = Health()
    parts = gpu.SPEC.build(cfg, health)
    try:
        sampler = next(s for s in parts.services if isinstance(s, Sampler))
        sampler.sample_once()
        time.sleep(0.01)
        sampler.sample_once()  # GPM ratios come from two samples
        collectors = [ScrapeCollector(n, c, health) for n, c in parts.scrape.items()] + [health]
        text, _ = assert_identical_to_prometheus_client(collected(collectors))
    finally:
        for service in parts.services:
            service.stop()
        fakenvml.configure(0)
    assert b"gpu_sm_active_ratio{" in text
    assert (b"DCGM_FI_DEV_GPU_UTIL{" in text) == (names == "both")


def test_sagemaker_exporter_output_is_byte_identical(monkeypatch):
    from sagemaker_fixtures import CREDS, Moto, create_endpoint, make_poller, put
    for key, val in CREDS.items():
        monkeypatch.setenv(key, val)
    from mlscope.sagemaker.collector import SageMakerCollector
    moto = Moto()
    try:
        create_endpoint(moto.url, "web", [("AllTraffic", "ml.m5.xlarge", 2)],
                        tags={"team": HOSTILE, "mlscope:slo": "0.995"})
        now = int(time.time()) // 60 * 60
        for minute in range(3, 8):
            put(moto.url, "web", "Invocations", now - minute * 60 + 1, 100)
            put(moto.url, "web", "ModelLatency", now - minute * 60 + 1,
                stats={"SampleCount": 10, "Sum": 2_000_000, "Minimum": 1, "Maximum": 500_000})
        health = Health()
        poller = make_poller(moto.url, time.time, health=health)  # moto has no percentiles
        assert poller.run_cycle()
        text, _ = assert_identical_to_prometheus_client(collected([SageMakerCollector([poller]), health]))
    finally:
        moto.stop()
    assert 'tag_team="say \\"hi\\"\\\\ C:\\\\path\\\\ and\\na new line, ünïcødé ✓"'.encode() in text
    assert b"sagemaker_invocations_total{" in text


# ---- edge cases ----

def edge_families(odd_names: bool = True) -> Families:
    """Every metric type and awkward value; `odd_names`: also names that escaping changes (which therefore do
    not read back as they were given)."""
    gauge = GaugeMetricFamily("edge_values", 'Help with "quotes", a \\ and a\nnew line.', labels=["case"])
    for case, v in [("nan", math.nan), ("inf", math.inf), ("minus_inf", -math.inf), ("zero", 0.0),
                    ("minus_zero", -0.0), ("tiny", 1e-9), ("million", 1234567.0), ("big", 12345678.9),
                    ("huge", 1e22), ("minus_big", -1234567.0), ("int", 7), ("bool", True), ("u64", 2 ** 64),
                    ("round", 10_000_000.0)]:
        gauge.add_metric([case], v)
    escaped = GaugeMetricFamily("edge_label_values", "label values", labels=["value", "other"])
    escaped.add_metric([HOSTILE, ""], 1)
    escaped.add_metric(["a\\nb", "\\"], 2)
    order = Metric("edge_label_order", "same labels, different insertion order", "gauge")
    order.add_sample("edge_label_order", {"b": "2", "a": "1"}, 1)
    order.add_sample("edge_label_order", {"a": "1", "b": "3"}, 2)
    counter = CounterMetricFamily("edge_requests", "counter with _created", labels=["code"], created=1700000000.5)
    counter.add_metric(["200"], 12, created=1700000000.25)
    histogram = HistogramMetricFamily("edge_latency_seconds", "histogram", labels=["path"], unit="seconds")
    histogram.add_metric(["/a"], [("0.005", 1), ("0.1", 4), ("+Inf", 5)], sum_value=0.3)
    summary = SummaryMetricFamily("edge_size_bytes", "summary", labels=["x"])
    summary.add_metric(["q"], count_value=3, sum_value=1e6)
    summary.add_sample("edge_size_bytes", {"x": "q", "quantile": "0.99"}, 123456789.0)
    info = InfoMetricFamily("edge_build", "info", value={"version": "1.2.3", "note": HOSTILE})
    stateset = StateSetMetricFamily("edge_state", "stateset", value={"ok": True, "degraded": False})
    gaugehistogram = GaugeHistogramMetricFamily("edge_queue", "gauge histogram", buckets=[("1", 2), ("+Inf", 3)],
                                                gsum_value=4)
    unknown = Metric("edge_unknown", "untyped", "unknown")
    unknown.add_sample("edge_unknown", {}, 3)
    names = Metric("job:edge_rule:rate5m", "a recording rule's name, with colons", "gauge")
    names.add_sample("job:edge_rule:rate5m", {"job": "x"}, 0.5)
    odd = Metric("edge.dotted", "names that need escaping", "gauge")
    odd.add_sample("edge.dotted", {"a.b": "1", "__reserved": "2", "_ok": "3"}, 1)
    stamped = Metric("edge_stamped", "timestamps", "gauge")
    stamped.add_sample("edge_stamped", {"k": "float"}, 1, timestamp=1700000000.123)
    stamped.add_sample("edge_stamped", {"k": "Timestamp"}, 2, timestamp=Timestamp(1700000000, 5))
    empty = GaugeMetricFamily("edge_empty", "a family without samples", labels=["x"])
    return Families([gauge, escaped, order, counter, histogram, summary, info, stateset, gaugehistogram, unknown,
                     stamped, empty, *((names, odd) if odd_names else ())])


def test_edge_cases_are_byte_identical():
    plain_text, _ = assert_identical_to_prometheus_client(edge_families(odd_names=False))
    text, om = assert_identical_to_prometheus_client(edge_families(), read_back=False)
    assert b'edge_values{case="nan"} NaN\n' in text and b'edge_values{case="minus_inf"} -Inf\n' in text
    assert b'edge_values{case="inf"} +Inf\n' in text and b'edge_values{case="big"} 1.23456789e+07\n' in text
    assert b'edge_values{case="round"} 1e+07\n' in text
    assert b'edge_label_order{a="1",b="2"} 1.0\nedge_label_order{a="1",b="3"} 2.0\n' in text
    assert b"# HELP edge_values Help with \"quotes\", a \\\\ and a\\nnew line.\n" in text
    assert b"# HELP edge_requests_created counter with _created\n# TYPE edge_requests_created gauge\n" in text
    assert b'edge_dotted{__reserved="2",_ok="3",a_b="1"} 1.0\n' in text
    assert b"# UNIT edge_latency_seconds seconds\n" in om and om.endswith(b"# EOF\n")
    assert b'job_edge_rule_rate5m{job="x"} 0.5\n' in om  # prometheus_client's OpenMetrics quirk, kept
    assert b'edge_stamped{k="float"} 1.0 1700000000123\n' in text
    # the text parser reads back every value and label value exactly
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parse_text(plain_text.decode())
              for s in f.samples}
    assert parsed[("edge_label_values", (("other", ""), ("value", HOSTILE)))] == 1
    assert parsed[("edge_values", (("case", "u64"),))] == 2 ** 64
    assert math.isnan(parsed[("edge_values", (("case", "nan"),))])


def test_exemplars_and_native_histograms_are_left_to_prometheus_client():
    counter = Metric("ex_requests", "with an exemplar", "counter")
    counter.add_sample("ex_requests_total", {"code": "200"}, 5,
                       exemplar=Exemplar({"trace_id": "abc123"}, 1.5, 1700000000.0))
    histogram = Metric("ex_latency_seconds", "bucket exemplar", "histogram")
    histogram.add_sample("ex_latency_seconds_bucket", {"le": "+Inf"}, 2, exemplar=Exemplar({"t": "1"}, 0.2))
    histogram.add_sample("ex_latency_seconds_count", {}, 2)
    histogram.add_sample("ex_latency_seconds_sum", {}, 0.3)
    native = Metric("ex_native_seconds", "native histogram", "histogram")
    native.add_sample("ex_native_seconds", {}, None, native_histogram=NativeHistogram(3, 1.5, 0, 0.001, 1))
    plain = Metric("ex_plain", "no exemplar", "gauge")
    plain.add_sample("ex_plain", {}, 1)
    families = Families([counter, histogram, plain])
    _, om = assert_identical_to_prometheus_client(families)
    assert b'ex_requests_total{code="200"} 5.0 # {trace_id="abc123"} 1.5 1700000000.0\n' in om
    # prometheus_client's parser cannot read back its own escaped quotes in exemplars, so no read-back here
    counter.samples[0] = counter.samples[0]._replace(exemplar=Exemplar({"trace_id": 'a"b\\c'}, 1.5))
    assert_identical_to_prometheus_client(families, read_back=False)
    assert encode_openmetrics(Families([native, plain])) == lib_om.generate_latest(Families([native, plain]))


def test_caches_are_capped_and_start_over_and_still_encode_correctly(monkeypatch):
    monkeypatch.setattr(textformat, "_MAX_CACHED", 3)
    caches = (textformat._text_series, textformat._om_series, textformat._text_headers, textformat._om_headers)
    for round_ in range(3):
        gauge = GaugeMetricFamily(f"churn_{round_}", "labels that never repeat", labels=["id"])
        for i in range(20):
            gauge.add_metric([f"{round_}-{i}"], i)
        families = Families([gauge, *edge_families().metrics])
        assert encode_text(families) == lib_text.generate_latest(families)
        assert encode_openmetrics(families) == lib_om.generate_latest(families)
        assert [len(cache) for cache in caches] == [3, 3, 3, 3]  # full: past the cap nothing is remembered
    for cache in caches:
        cache.trim()
        assert len(cache) == 0  # a full cache starts over


def test_go_float_is_prometheus_clients_float_formatting():
    rng = random.Random(11)
    values = [0.0, -0.0, 1.0, -1.0, 0.1, 1e-300, 5e-324, 1e300, 1.7976931348623157e308, 999999.9, 1e6, 9999999.0,
              1e7, 123456.7, 1234567.5, -1e7, 2 ** 53, 2 ** 64, 7, True, False, math.inf, -math.inf, math.nan]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(20_000)]
    values += [float(rng.randint(0, 10 ** 15)) for _ in range(5_000)]
    mismatches = [v for v in values if go_float(v) != floatToGoString(v)]
    assert mismatches == []


@pytest.mark.parametrize("accept, lean", [
    (PROMETHEUS_ACCEPT, encode_openmetrics),
    (TEXT_ACCEPT, encode_text),
    ("", encode_text),
    ("application/openmetrics-text", encode_openmetrics),
    ("text/plain;version=1.0.0;escaping=underscores", encode_text),
    ("text/plain;version=1.0.0;escaping=allow-utf-8", None),
    ("application/openmetrics-text;version=1.0.0;escaping=values", None),
])
def test_negotiation_matches_prometheus_client(accept, lean):
    encoder, content_type = choose_encoder(accept)
    lib_encoder, lib_content_type = lib_text.choose_encoder(accept)
    assert content_type == lib_content_type
    if lean is None:
        assert encoder is lib_encoder or encoder.func is lib_encoder.func  # other escapings: prometheus_client's
    else:
        assert encoder is lean
    families = edge_families()
    assert encoder(families) == lib_encoder(families)


@pytest.mark.integration
def test_lean_output_of_every_exporter_passes_promtool(tmp_path):
    from mlscope import gpu
    from mlscope.gpu import fakenvml
    host = host_families(tmp_path, "proc")
    cfg = resolve([*COMMON_SETTINGS, *gpu.SETTINGS], {"simulate": 2})  # DCGM's names fail the lint
    health = Health()
    parts = gpu.SPEC.build(cfg, health)
    try:
        gpus = collected([ScrapeCollector(n, c, health) for n, c in parts.scrape.items()] + [health])
    finally:
        for service in parts.services:
            service.stop()
        fakenvml.configure(0)
    assert_promtool_clean(encode_text(host).decode())  # node_exporter's own camelCase names aside
    result = promtool_check_metrics(encode_text(gpus).decode())
    assert result.returncode == 0, result.stdout + result.stderr
