import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_runtest_setup(item):
    """Let helpers.require_binary see which test is running (fixtures of any scope included)."""
    import helpers
    helpers.CURRENT_TEST = item


@pytest.fixture(autouse=True, scope="module")
def moto_is_itself_after_each_module():
    """The AWS emulator patches moto in-process; every fixture that starts one must stop it, which undoes them."""
    yield
    patches = sys.modules.get("mlscope.demo.patches")
    assert patches is None or not patches.applied(), "a fixture left the emulator's moto patches installed"
