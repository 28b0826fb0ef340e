import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_runtest_setup(item):
    """Let helpers.require_binary see which test is running (fixtures of any scope included)."""
    import helpers
    helpers.CURRENT_TEST = item
