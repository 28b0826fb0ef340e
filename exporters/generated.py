"""Files generated from code and committed (dashboards JSON, Kubernetes manifests): write what differs,
delete what nothing generates any more, or with `check` change nothing and exit 1 when the two disagree."""

from __future__ import annotations

import sys
from pathlib import Path


def sync_folder(out: Path, rendered: dict[str, str], suffix: str, check: bool, command: str) -> int:
    """`rendered` maps file names (ending in `suffix`) to their text; files in `out` with that suffix that are
    not in it are stale. Returns the exit status."""
    stale = sorted(p.name for p in out.glob(f"*{suffix}") if p.name not in rendered) if out.is_dir() else []
    differs = [name for name, text in sorted(rendered.items())
               if not (out / name).is_file() or (out / name).read_text() != text]
    if check:
        for name in differs:
            print(f"{out / name}: differs from what the code generates; run `{command}`", file=sys.stderr)
        for name in stale:
            print(f"{out / name}: nothing generates this file; delete it (or run `{command}`)", file=sys.stderr)
        return 1 if differs or stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in differs:
        (out / name).write_text(rendered[name])
        print(f"wrote {out / name}")
    for name in stale:
        (out / name).unlink()
        print(f"deleted {out / name}")
    return 0
