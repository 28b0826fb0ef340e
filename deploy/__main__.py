"""`python -m deploy`: (re)write the kustomize base deploy/kubernetes/base from deploy/kubernetes.py.

`--check` writes nothing and exits 1 when a committed file differs from what the code generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlscope.generated import sync_folder

from .kubernetes import render

BASE = Path(__file__).resolve().parent / "kubernetes" / "base"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed manifests are stale")
    parser.add_argument("--out", type=Path, default=BASE, help=f"output folder (default {BASE})")
    args = parser.parse_args(argv)

    return sync_folder(args.out, render(), ".yaml", args.check, "python -m deploy")

if __name__ == "__main__":
    sys.exit(main())
