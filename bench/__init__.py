"""Benchmarks and the fault suite: `python -m bench [host|gpu|sagemaker|dashboards|faults]`."""

import sys
from pathlib import Path

# The benchmarks start processes with the tests' launcher and helpers (tests/helpers.py): one of each.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
