"""A lean encoder for the two formats Prometheus scrapes: text 0.0.4 and OpenMetrics 1.0.0.

It writes exactly the bytes prometheus_client's `generate_latest` functions write (tests compare them on every
exporter's output and on edge cases), at a fraction of the cost: prometheus_client re-validates and re-escapes
every metric name, label name and label value of every sample on every scrape, which was about 40 % of a host
exporter scrape. Here what repeats between scrapes is escaped once, by prometheus_client's own functions, and
remembered: each family's HELP/TYPE header and each series' `name{labels}`. Only values are formatted each time.

Anything rarer is left to prometheus_client itself: other negotiated versions or escapings, and (OpenMetrics)
families with exemplars or native histograms.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterable

from prometheus_client import exposition as _text
from prometheus_client.openmetrics import exposition as _om

Encoder = Callable[[object], bytes]

_UNDERSCORES = _om.UNDERSCORES
_EOF = "# EOF\n"
_SPECIAL_FLOATS = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}
# The text format moves these OpenMetrics samples to gauge families of their own, after the family's samples.
_OM_ONLY_SUFFIXES = ("_created", "_gsum", "_gcount")
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
# Entries per cache (about 0.45 KB each): enough for a large host's series; a bigger or churning output (label
# values that never repeat) fills a cache up, and the next scrape starts it over. Past the cap, series are
# escaped as they come, as fast as prometheus_client does it, but not remembered.
_MAX_CACHED = 10_000


def choose_encoder(accept: str) -> tuple[Encoder, str]:
    """prometheus_client's content negotiation, with the lean encoders for what they produce identically."""
    encoder, content_type = _text.choose_encoder(accept)
    if isinstance(encoder, partial):
        if encoder.func is _text.generate_latest and encoder.keywords == {"escaping": _UNDERSCORES}:
            return encode_text, content_type
        if encoder.func is _om.generate_latest and encoder.keywords == {"escaping": _UNDERSCORES, "version": "1.0.0"}:
            return encode_openmetrics, content_type
    elif encoder is _text.generate_latest:
        return encode_text, content_type
    return encoder, content_type


def go_float(value: float) -> str:
    """prometheus_client's floatToGoString (Go's formatting of a sample value), without its slow checks."""
    d = float(value)
    s = repr(d)
    dot = s.find(".")
    if dot > 6 and d > 0:  # Go switches to exponents sooner than Python
        return f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.") + f"e+{dot - 1:02d}"
    if dot < 0:
        return _SPECIAL_FLOATS.get(s, s)
    return s


def _text_sample_name(name: str) -> str:
    return _om.escape_metric_name(name, _UNDERSCORES)


def _om_sample_name(name: str) -> str:
    return _om._escape(name, _UNDERSCORES, _om._is_legacy_labelname_rune)


def _label_text(items: Iterable[tuple[str, str]]) -> str:
    """`{k="v",...}` as both prometheus_client encoders write a label set: sorted, names and values escaped."""
    return "{" + ",".join(f'{_om.escape_label_name(k, _UNDERSCORES)}="{_om._escape(v, _om.ALLOWUTF8, False)}"'
                          for k, v in sorted(items)) + "}"


class _Cache(dict):
    """A dict of at most _MAX_CACHED entries, which starts over once full."""

    def remember(self, key, value):
        if len(self) < _MAX_CACHED:
            self[key] = value
        return value

    def trim(self) -> None:
        if len(self) >= _MAX_CACHED:
            self.clear()


_text_headers, _text_series, _om_headers, _om_series = _Cache(), _Cache(), _Cache(), _Cache()


def _series(cache: _Cache, escape_name: Callable[[str], str], name: str, labels: dict) -> str:
    """`name{labels}` of a sample: remembered, or escaped now."""
    key = (name, *labels.items()) if labels else name
    text = cache.get(key)
    if text is None:
        text = cache.remember(key, escape_name(name) + (_label_text(labels.items()) if labels else ""))
    return text


def _text_help(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _text_header(metric) -> tuple[str, dict[str, str]]:
    """(HELP and TYPE lines, {sample name: OpenMetrics-only suffix}) of a family in the text format."""
    key = (metric.name, metric.type, metric.documentation)
    header = _text_headers.get(key)
    if header is None:
        name, typ = metric.name, metric.type
        if typ == "counter":
            name += "_total"
        elif typ == "info":
            name += "_info"
        escaped = _om.escape_metric_name(name, _UNDERSCORES)
        lines = f"# HELP {escaped} {_text_help(metric.documentation)}\n# TYPE {escaped} {_TEXT_TYPES.get(typ, typ)}\n"
        om_only = {metric.name + suffix: suffix for suffix in _OM_ONLY_SUFFIXES}
        header = _text_headers.remember(key, (lines, om_only))
    return header


def encode_text(registry) -> bytes:
    """The Prometheus text format 0.0.4: prometheus_client's `generate_latest(registry)`, byte for byte."""
    for cache in (_text_headers, _text_series):
        cache.trim()
    out: list[str] = []
    append = out.append
    for metric in registry.collect():
        header, om_only = _text_header(metric)
        append(header)
        moved: dict[str, list[str]] = {}
        for sample in metric.samples:
            name, labels, value, timestamp, _exemplar, _native_histogram = sample
            series = _series(_text_series, _text_sample_name, name, labels)
            line = (f"{series} {go_float(value)}\n" if timestamp is None
                    else f"{series} {go_float(value)} {int(float(timestamp) * 1000):d}\n")
            suffix = om_only.get(name)
            if suffix is None:
                append(line)
            else:
                moved.setdefault(suffix, []).append(line)
        for suffix, lines in sorted(moved.items()):
            name = _om.escape_metric_name(metric.name + suffix, _UNDERSCORES)
            append(f"# HELP {name} {_text_help(metric.documentation)}\n# TYPE {name} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def _om_header(metric) -> str:
    key = (metric.name, metric.type, metric.documentation, metric.unit)
    header = _om_headers.get(key)
    if header is None:
        name = _om.escape_metric_name(metric.name, _UNDERSCORES)
        help_ = _om._escape(metric.documentation, _om.ALLOWUTF8, _om._is_legacy_labelname_rune)
        header = f"# HELP {name} {help_}\n# TYPE {name} {metric.type}\n"
        if metric.unit:
            header += f"# UNIT {name} {metric.unit}\n"
        _om_headers.remember(key, header)
    return header


class _Family:
    """One family in the shape of a registry, for prometheus_client's encoder."""

    def __init__(self, metric) -> None:
        self.metric = metric

    def collect(self) -> list:
        return [self.metric]


def encode_openmetrics(registry) -> bytes:
    """OpenMetrics 1.0.0: prometheus_client's `openmetrics.generate_latest(registry)`, byte for byte."""
    for cache in (_om_headers, _om_series):
        cache.trim()
    out: list[str] = []
    for metric in registry.collect():
        lines = [_om_header(metric)]
        for sample in metric.samples:
            name, labels, value, timestamp, exemplar, native_histogram = sample
            if exemplar or native_histogram:
                lines = [_om.generate_latest(_Family(metric)).decode("utf-8")[: -len(_EOF)]]
                break
            series = _series(_om_series, _om_sample_name, name, labels)
            value = "" if value is None else go_float(value)
            lines.append(f"{series} {value}\n" if timestamp is None else f"{series} {value} {timestamp}\n")
        out.extend(lines)
    out.append(_EOF)
    return "".join(out).encode("utf-8")
