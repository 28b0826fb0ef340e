"""`mlscope rightsize`: flags, MLSCOPE_* environment and YAML file through the shared settings machinery."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .. import logs
from ..cli import OneLineParser, add_setting_flags
from ..prices import PriceTableError
from ..sagemaker.config import prices as price_overrides  # the SageMaker exporter's format
from ..settings import (COMMON_SETTINGS, Config, Setting, SettingError, boolean, choice, listen_address,
                        non_negative_number, positive_duration, positive_int, regex, resolve, string)
from . import Report, analyse
from .catalogue import Catalogue
from .policy import PROFILES, Policy
from .outputs import RENDERERS
from .query import Auth, PromQL, RightsizeError



def timestamp(raw: Any) -> float:
    """RFC 3339 (2026-11-30T12:00:00Z) or Unix seconds."""
    text = str(raw).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"must be RFC 3339 (e.g. 2026-11-30T12:00:00Z) or Unix seconds, got {raw!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"must carry a time zone (e.g. Z or +01:00), got {raw!r}")
    return parsed.timestamp()


def percent(raw: Any) -> float:
    value = non_negative_number(raw)
    if value > 100:
        raise ValueError(f"must be between 0 and 100, got {raw!r}")
    return value


def fraction(raw: Any) -> float:
    value = non_negative_number(raw)
    if value > 1:
        raise ValueError(f"must be between 0 and 1, got {raw!r}")
    return value


SETTINGS = [
    *COMMON_SETTINGS,
    Setting("prometheus", string, None, "PromQL API base URL (Prometheus, VictoriaMetrics, Thanos, Mimir)"),
    Setting("lookback", positive_duration, 14 * 86400, "how much history to analyse, e.g. 14d, 32d, 93d (seconds)"),
    Setting("profile", choice(*PROFILES), "balanced", "cost | balanced | performance"),
    Setting("at", timestamp, None, "evaluate as of this moment: RFC 3339 or Unix seconds (default: now)"),
    Setting("format", choice(*RENDERERS), "table", "table | json | csv | html"),
    Setting("output", string, None, "write the report to this file (default: standard output)"),
    Setting("endpoint", regex, None, "only SageMaker endpoints whose name matches this regular expression"),
    Setting("instance", regex, None, "only hosts whose instance label matches this regular expression"),
    Setting("basic_auth_user", string, None, "basic-auth user for the query API"),
    Setting("basic_auth_password_file", string, None, "file holding the basic-auth password"),
    Setting("bearer_token_file", string, None, "file holding a bearer token for the query API"),
    Setting("ca_file", string, None, "CA certificate(s) to verify the query API's TLS certificate"),
    Setting("insecure_skip_verify", boolean, False, "do not verify the query API's TLS certificate"),
    Setting("query_timeout", positive_duration, 60.0, "timeout of each query, e.g. 60s (seconds)"),
    Setting("host_region", string, "us-east-1", "region to price hosts in when their cost series has no region label"),
    Setting("catalogue", string, None, "instance catalogue CSV (default: the shipped one)"),
    Setting("prices", price_overrides, {}, "price overrides {instance_type: $/h or {region: $/h}}",
            file_only=True),
    # Decision numbers (docs/rightsizing.md says where each default comes from); profile-dependent ones
    # default to the profile's value.
    Setting("cpu_percentile", percent, None, "percentile of the 5-minute CPU maxima taken as demand (profile)"),
    Setting("gpu_percentile", percent, None, "percentile of the 5-minute GPU maxima taken as demand (profile)"),
    Setting("memory_percentile", percent, None, "percentile of the 5-minute memory maxima (profile: max)"),
    Setting("headroom", non_negative_number, None, "headroom above demand, 0.2 = 20 percent (profile)"),
    Setting("min_history", positive_duration, 30 * 3600, "less history gives InsufficientData, e.g. 30h (seconds)"),
    Setting("idle_utilization", fraction, 0.05, "busiest resource under this for the lookback = Idle"),
    Setting("idle_requests_per_minute", non_negative_number, 1.0, "endpoints under this request rate can be Idle"),
    Setting("overprovisioned_below", fraction, 0.5, "demand with headroom under this share of capacity = over"),
    Setting("min_savings_percent", percent, 10.0, "an Overprovisioned finding must save at least this much"),
    Setting("knee_factor", non_negative_number, 1.5, "latency this many times its low-load baseline = the knee"),
    Setting("peak_error_ratio", fraction, 0.01, "5xx share at the busiest 5 % of windows above this = throughput"),
    Setting("latency_objective", positive_duration, None, "p99 latency objective (default: the knee's latency)"),
    Setting("autoscaling_safety_factor", fraction, 0.5, "autoscaling target = sustainable rate x this x 60"),
    Setting("production_min_instances", positive_int, 2, "keep at least this many where that many run today"),
    Setting("max_options", positive_int, 5, "options per subject"),
    Setting("max_performance_risk", positive_int, 3, "leave out options riskier than this (0-4)"),
    # Continuous mode (mlscope.rightsize.serve).
    Setting("serve", boolean, False, "run periodically and serve the results as metrics"),
    Setting("listen", listen_address, ("", 9859), "address to serve metrics on in --serve mode, HOST:PORT"),
    Setting("interval", positive_duration, 3600, "how often to re-run the analysis in --serve mode, e.g. 1h (seconds)"),
]


def read_secret(path: str | None, setting: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingError(f"--{setting}: cannot read {path}: {exc.strerror or exc}") from None


def client_from(cfg: Config) -> PromQL:
    if not cfg.prometheus:
        raise SettingError("--prometheus: the query API URL is required (or MLSCOPE_PROMETHEUS)")
    auth = Auth(cfg.basic_auth_user, read_secret(cfg.basic_auth_password_file, "basic-auth-password-file"),
                read_secret(cfg.bearer_token_file, "bearer-token-file"), cfg.ca_file, bool(cfg.insecure_skip_verify))
    if cfg.ca_file and not os.path.isfile(cfg.ca_file):
        raise SettingError(f"--ca-file: {cfg.ca_file} does not exist")
    return PromQL(cfg.prometheus, timeout=cfg.query_timeout, auth=auth)


def policy_from(cfg: Config) -> Policy:
    return Policy(profile=cfg.profile, cpu_percentile=cfg.cpu_percentile, gpu_percentile=cfg.gpu_percentile,
                  memory_percentile=cfg.memory_percentile, headroom=cfg.headroom,
                  min_history_hours=cfg.min_history / 3600, idle_utilization=cfg.idle_utilization,
                  idle_requests_per_minute=cfg.idle_requests_per_minute,
                  overprovisioned_below=cfg.overprovisioned_below, min_savings_percent=cfg.min_savings_percent,
                  knee_factor=cfg.knee_factor, peak_error_ratio=cfg.peak_error_ratio,
                  latency_objective=cfg.latency_objective,
                  autoscaling_safety_factor=cfg.autoscaling_safety_factor,
                  production_min_instances=cfg.production_min_instances, max_options=cfg.max_options,
                  max_performance_risk=cfg.max_performance_risk)


def run_once(cfg: Config, at: float | None = None) -> Report:
    """One analysis with these settings, as of `at` (default: --at, else now)."""
    try:
        catalogue = Catalogue.load(cfg.catalogue, cfg.prices)
    except PriceTableError as exc:
        raise SettingError(f"--catalogue: {exc}") from None
    when = at if at is not None else (cfg.at if cfg.at is not None else time.time())
    return analyse(client_from(cfg), when, cfg.lookback, policy_from(cfg), catalogue,
                   endpoint=cfg.endpoint.pattern if cfg.endpoint else None,
                   instance=cfg.instance.pattern if cfg.instance else None, host_region=cfg.host_region)


def write(text: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        return
    path = Path(output)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise SettingError(f"--output: cannot write {output}: {exc.strerror or exc}") from None


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="mlscope rightsize",
                           description="Rightsize SageMaker variants and GPU/CPU hosts from Prometheus history")
    add_setting_flags(parser, SETTINGS)
    cfg = resolve(SETTINGS, vars(parser.parse_args(list(argv))))
    logs.setup(cfg.log_level)
    if cfg.serve:
        from .serve import run  # continuous mode: periodic run_once(), served as metrics
        return run(cfg)
    try:
        report = run_once(cfg).as_dict()
    except RightsizeError as exc:
        sys.stderr.write(f"mlscope rightsize: error: {exc}\n")
        return 2
    write(RENDERERS[cfg.format](report), cfg.output)
    return 0
