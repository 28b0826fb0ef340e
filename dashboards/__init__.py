"""MLScope's Grafana dashboards, generated from Python with grafana-foundation-sdk.

`python -m dashboards` writes dashboards/json/<uid>.json; `python -m dashboards --check` exits 1 when
the committed JSON differs from what the code generates.
"""

from __future__ import annotations

from pathlib import Path

from . import cost, endpoints, gpus, hosts, models, rightsizing, stack, wall
from .panels import to_dict, to_json

JSON_DIR = Path(__file__).resolve().parent / "json"

# uid -> module; each module has UID, TITLE and build() -> grafana_foundation_sdk.models.dashboard.Dashboard
MODULES = {m.UID: m for m in (wall, endpoints, gpus, hosts, models, cost, rightsizing, stack)}
UIDS = tuple(MODULES)


def build(uid: str):
    return MODULES[uid].build()


def render(uid: str) -> str:
    """The dashboard's JSON text, byte-for-byte what is committed."""
    return to_json(build(uid))


def render_all() -> dict[str, str]:
    return {uid: render(uid) for uid in UIDS}


def json_path(uid: str) -> Path:
    return JSON_DIR / f"{uid}.json"


def load(uid: str) -> dict:
    return to_dict(build(uid))


__all__ = ["MODULES", "UIDS", "JSON_DIR", "build", "render", "render_all", "json_path", "load"]
