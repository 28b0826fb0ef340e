"""boto3 sessions and clients for one target (account + region), with call accounting.

Credentials come from boto3's default chain (env, shared files, SSO, container/instance roles) or,
with `role_arn`, from STS AssumeRole on top of it (refreshed before expiry). They are never logged.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError,
                                 ProfileNotFound, CredentialRetrievalError)

from .. import __version__
from .config import Target

MAX_CONNECTIONS = 8  # per client: GetMetricStatistics runs this many requests at once

CREDENTIAL_CODES = {
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "InvalidSignatureException", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
    "AuthFailure", "MissingAuthenticationToken", "IncompleteSignature", "NotAuthorized",
}


def error_code(exc: BaseException) -> str:
    """A short, label-safe code for an AWS failure (never includes credentials)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return "NoCredentials"
    if isinstance(exc, ProfileNotFound):
        return "ProfileNotFound"
    return type(exc).__name__


def is_credentials_error(exc: BaseException) -> bool:
    return isinstance(exc, (NoCredentialsError, PartialCredentialsError, ProfileNotFound,
                            CredentialRetrievalError)) or \
        error_code(exc) in CREDENTIAL_CODES


def describe_error(exc: BaseException) -> str:
    """One line for the log: code and AWS's message, no traceback."""
    code = error_code(exc)
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message") or "").splitlines()
        message = message[0][:200] if message else ""
        text = f"{code}: {message}" if message else code
    else:
        text = f"{code}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
    if is_credentials_error(exc):
        return f"AWS credentials missing or rejected ({text})"
    return text


class Stats:
    """What this target has asked of AWS: exported as mlscope_cloudwatch_* counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter = Counter()          # api -> calls
        # query kind -> what CloudWatch bills: GetMetricData queries, one per GetMetricStatistics request
        self.metrics_requested: Counter = Counter()
        self.errors: Counter = Counter()            # (api, code) -> count
        self.price_missing: Counter = Counter()     # instance_type -> lookups without a price
        self.invalid_tags: Counter = Counter()      # tag key -> endpoint descriptions with an invalid value

    def count_request(self, api: str, metrics: Counter | None = None) -> None:
        with self.lock:
            self.requests[api] += 1
            self.metrics_requested.update(metrics or {})

    def count_error(self, api: str, code: str, n: int = 1) -> None:
        with self.lock:
            self.errors[(api, code)] += n

    def count(self, counter: str, key: str, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n

    def snapshot(self) -> dict[str, dict]:
        with self.lock:
            return {name: dict(getattr(self, name))
                    for name in ("requests", "metrics_requested", "errors", "price_missing", "invalid_tags")}


def _snake(api: str) -> str:
    out = []
    for i, ch in enumerate(api):
        if ch.isupper() and i and not api[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Aws:
    """Clients for one target. `call` counts every API call and every failure (after retries)."""

    def __init__(self, target: Target, stats: Stats, max_attempts: int = 5, timeout: float = 10.0):
        self.target = target
        self.stats = stats
        self._config = BotoConfig(
            region_name=target.region,
            retries={"mode": "adaptive", "total_max_attempts": max_attempts},
            connect_timeout=timeout, read_timeout=timeout,
            user_agent_extra=f"mlscope/{__version__}",
            max_pool_connections=MAX_CONNECTIONS,
        )
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._session: boto3.session.Session | None = None

    def _get_session(self) -> boto3.session.Session:
        if self._session is None:
            core = botocore.session.get_session()
            if self.target.role_arn:
                base = boto3.session.Session(region_name=self.target.region)
                sts = base.client("sts", endpoint_url=self.target.endpoint_url, config=self._config)
                self._clients["sts"] = sts
                core._credentials = DeferredRefreshableCredentials(  # noqa: SLF001 (documented boto pattern)
                    refresh_using=self._assume_role, method="sts-assume-role")
            self._session = boto3.session.Session(botocore_session=core, region_name=self.target.region)
        return self._session

    def _assume_role(self) -> dict:
        params = {"RoleArn": self.target.role_arn, "RoleSessionName": "mlscope-sagemaker-exporter",
                  "DurationSeconds": 3600}
        if self.target.external_id:
            params["ExternalId"] = self.target.external_id
        creds = self.call("sts", "AssumeRole", **params)["Credentials"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                session = self._get_session()
                if service not in self._clients:
                    self._clients[service] = session.client(service, endpoint_url=self.target.endpoint_url,
                                                            config=self._config)
            return self._clients[service]

    def call(self, service: str, api: str, metrics: Counter | None = None, **params: Any) -> dict:
        """`metrics`: billed units of this call by query kind (counters, percentiles, utilization, ...)."""
        self.stats.count_request(api, metrics)
        try:
            return getattr(self.client(service), _snake(api))(**params)
        except (ClientError, BotoCoreError) as exc:
            self.stats.count_error(api, error_code(exc))
            raise
