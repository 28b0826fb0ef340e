"""The fault-injection suite (bench/faults.py, `make faults`) in its short form: every count but the faults is 0."""

from __future__ import annotations

import pytest

from bench import faults
from helpers import require_binary


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_injected_faults_cost_no_crash_no_increment_and_no_page():
    for binary in ("prometheus", "prometheus-alertmanager"):
        require_binary(binary)
    rows = faults.run(short=True)
    print(faults.table(rows))
    assert {row.scenario for row in rows} >= {"aws: throttling, 5xx, AWS down", "aws: emulator restarted empty",
                                               "nvml: no driver, GPU lost, errors, Xid", "prometheus: restart",
                                               "alertmanager down while an alert fires"}
    for row in rows:
        assert row.faults > 0, f"{row.scenario}: no fault was injected, so it proves nothing"
        assert (row.crashes, row.lost_increments, row.pages_lost) == (0, 0, 0), faults.table([row])
