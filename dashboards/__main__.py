"""Regenerate the dashboards' JSON: `python -m dashboards [--check] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import JSON_DIR, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the JSON in --out differs from the generated JSON")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help=f"output folder (default {JSON_DIR})")
    args = parser.parse_args(argv)

    rendered = render_all()
    expected = {f"{uid}.json" for uid in rendered}
    stale = sorted(p.name for p in args.out.glob("*.json") if p.name not in expected) if args.out.is_dir() else []
    if args.check:
        differs = [name for name in sorted(expected)
                   if not (args.out / name).is_file() or (args.out / name).read_text() != rendered[name[:-5]]]
        for name in differs:
            print(f"{args.out / name}: differs from the generated dashboard; run `python -m dashboards`",
                  file=sys.stderr)
        for name in stale:
            print(f"{args.out / name}: no dashboard generates this file; delete it", file=sys.stderr)
        return 1 if differs or stale else 0

    args.out.mkdir(parents=True, exist_ok=True)
    for uid, text in rendered.items():
        path = args.out / f"{uid}.json"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    for name in stale:
        (args.out / name).unlink()
        print(f"removed {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
