"""Settings: declared once per exporter, read from a YAML file, MLSCOPE_* env vars and flags.

Precedence: flag > environment variable > config file > default.
Every problem is raised as SettingError, whose message names the setting;
the CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import yaml


class SettingError(Exception):
    """A bad setting: the message names the setting and says what is wrong."""


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any = None
    help: str = ""
    # Structured settings (mappings, nested lists) are only accepted from the config file.
    file_only: bool = False
    # Other flag names accepted for this setting, e.g. node_exporter's "--path.procfs"; a boolean
    # setting also takes "--no-<flag>" for each of its names.
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "MLSCOPE_" + self.name.upper()


# ---- parsers: raw value (from YAML, env or a flag) -> typed value; raise ValueError ----

def string(raw: Any) -> str:
    if isinstance(raw, (dict, list)):
        raise ValueError("must be a string")
    return str(raw)


def integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"must be an integer, got {raw!r}")
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"must be an integer, got {raw!r}") from None


def positive_int(raw: Any) -> int:
    value = integer(raw)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(raw: Any) -> int:
    value = integer(raw)
    if value < 0:
        raise ValueError(f"must be zero or more, got {value}")
    return value


def number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"must be a number, got {raw!r}")
    try:
        return float(str(raw).strip())
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None


def optional_number(raw: Any) -> float | None:
    return None if raw is None or raw == "" else non_negative_number(raw)


def non_negative_number(raw: Any) -> float:
    value = number(raw)
    if value < 0:
        raise ValueError(f"must be zero or more, got {raw!r}")
    return value


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(raw: Any) -> float:
    """Seconds as a number (`60`) or a Prometheus-style duration (`3m`, `1h30m`)."""
    if isinstance(raw, bool):
        raise ValueError(f"must be a duration like 60 or 3m, got {raw!r}")
    if isinstance(raw, (int, float)):
        seconds = float(raw)
    else:
        text = str(raw).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"must be a duration like 60 or 3m, got {raw!r}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return seconds


def positive_duration(raw: Any) -> float:
    value = duration(raw)
    if value <= 0:
        raise ValueError(f"must be more than zero, got {raw!r}")
    return value


def string_list(raw: Any) -> list[str]:
    """A YAML list, or a comma-separated string from a flag or env var."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, list) and all(isinstance(x, (str, int, float)) for x in raw):
        return [str(x) for x in raw]
    raise ValueError("must be a list of strings")


def mapping(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping")
    return raw


def choice(*options: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return text
    return parse


def listen_address(raw: Any) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (all interfaces)."""
    text = str(raw).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"must be HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return host, port


def regex(raw: Any) -> re.Pattern | None:
    if raw is None or raw == "":
        return None
    try:
        return re.compile(str(raw))
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None


# ---- loading ----

COMMON_SETTINGS = [
    Setting("config", string, None, "YAML config file"),
    Setting("web_config", string, None, "TLS and basic-auth file (exporter-toolkit format)",
            aliases=("--web.config.file",)),
    Setting("log_level", choice("debug", "info", "warning", "error"), "info", "log level"),
    Setting("web_read_timeout", positive_duration, 10.0,
            "seconds a client has to send a request's headers (and TLS handshake) or to take a reply"),
    Setting("web_idle_timeout", positive_duration, 120.0, "seconds a keep-alive connection may wait idle"),
    Setting("web_max_connections", positive_int, 512,
            "open connections at most; a new one closes the longest-waiting idle one"),
]


class Config:
    """Resolved settings, as attributes."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Config({self.__dict__!r})"


def read_yaml_file(path: str, setting: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise SettingError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SettingError(f"{setting}: {path} is not valid YAML{where}: {problem}") from None


def resolve(settings: list[Setting], flags: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    """Merge defaults < file < env < flags and parse every value.

    `flags` holds only the flags given on the command line (name -> raw string).
    """
    environ = os.environ if environ is None else environ
    by_name = {s.name: s for s in settings}

    config_path = flags.get("config") or environ.get("MLSCOPE_CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        loaded = read_yaml_file(config_path, "--config")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingError(f"--config: {config_path} must hold a YAML mapping of settings")
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in by_name or name == "config":
                raise SettingError(f"--config: unknown setting {key!r} in {config_path}")
            file_values[name] = value

    values: dict[str, Any] = {}
    for setting in settings:
        source, raw = "default", setting.default
        if setting.name in file_values:
            source, raw = f"{setting.name} in {config_path}", file_values[setting.name]
        if not setting.file_only and setting.env in environ:
            source, raw = setting.env, environ[setting.env]
        if not setting.file_only and flags.get(setting.name) is not None:
            source, raw = setting.flag, flags[setting.name]
        if raw is None or source == "default":
            values[setting.name] = raw
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{source}: {exc}") from None
    return Config(values)
