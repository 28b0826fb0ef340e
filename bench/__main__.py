"""`make bench`: run every benchmark; each prints a table of medians and ratios against its baseline."""

import importlib
import sys

SUITES = ["bench.host", "bench.gpu", "bench.sagemaker", "bench.dashboards", "bench.rightsize", "bench.scale",
          "bench.faults"]


def main(argv: list[str]) -> int:
    wanted = [s for s in SUITES if not argv or s.split(".")[-1] in argv]
    failed = 0
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        try:
            if importlib.import_module(name).main() not in (None, 0):
                failed += 1
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"(not present: {name})")
        except Exception as exc:  # one broken suite must not hide the others' numbers
            failed += 1
            print(f"{name} failed: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
