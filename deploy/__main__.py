"""`python -m deploy`: (re)write the kustomize base deploy/kubernetes/base from deploy/kubernetes.py.

`--check` writes nothing and exits 1 when a committed file differs from what the code generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .kubernetes import render

BASE = Path(__file__).resolve().parent / "kubernetes" / "base"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed manifests are stale")
    parser.add_argument("--out", type=Path, default=BASE, help=f"output folder (default {BASE})")
    args = parser.parse_args(argv)

    rendered = render()
    stale = sorted(p.name for p in args.out.glob("*.yaml") if p.name not in rendered) if args.out.is_dir() else []
    differs = [name for name, text in rendered.items()
               if not (args.out / name).is_file() or (args.out / name).read_text() != text]
    if args.check:
        for name in differs:
            print(f"{args.out / name}: differs from the generated manifest; run `python -m deploy`", file=sys.stderr)
        for name in stale:
            print(f"{args.out / name}: nothing generates this file; delete it", file=sys.stderr)
        return 1 if differs or stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in differs:
        (args.out / name).write_text(rendered[name])
        print(f"wrote {args.out / name}")
    for name in stale:
        (args.out / name).unlink()
        print(f"deleted {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
