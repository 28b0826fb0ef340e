"""Regenerate the dashboards' JSON: `python -m dashboards [--check] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlscope.generated import sync_folder

from . import JSON_DIR, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the JSON in --out differs from the generated JSON")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help=f"output folder (default {JSON_DIR})")
    args = parser.parse_args(argv)

    rendered = {f"{uid}.json": text for uid, text in render_all().items()}
    return sync_folder(args.out, rendered, ".json", args.check, "python -m dashboards")

if __name__ == "__main__":
    sys.exit(main())
