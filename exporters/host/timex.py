"""adjtimex(2): clock synchronisation state, as node_exporter's timex collector."""

from __future__ import annotations

import ctypes
import errno
import ctypes.util
import logging
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import families_of

log = logging.getLogger(__package__)

TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_NANO = 0x2000
PPM16 = 1_000_000.0 * 65536.0  # freq, ppsfreq and stabil are ppm with a 16-bit fraction
MICRO = 1e6


class Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (64-bit Linux)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_padding", ctypes.c_int * 11)]


TABLE = (
    ("node_timex_sync_status", "Is clock synchronized to a reliable server (1 = yes, 0 = no).", "gauge"),
    ("node_timex_offset_seconds", "Time offset in between local system and reference clock.", "gauge"),
    ("node_timex_frequency_adjustment_ratio", "Local clock frequency adjustment.", "gauge"),
    ("node_timex_maxerror_seconds", "Maximum error in seconds.", "gauge"),
    ("node_timex_estimated_error_seconds", "Estimated error in seconds.", "gauge"),
    ("node_timex_status", "Value of the status array bits.", "gauge"),
    ("node_timex_loop_time_constant", "Phase-locked loop time constant.", "gauge"),
    ("node_timex_tick_seconds", "Seconds between clock ticks.", "gauge"),
    ("node_timex_pps_frequency_hertz", "Pulse per second frequency.", "gauge"),
    ("node_timex_pps_jitter_seconds", "Pulse per second jitter.", "gauge"),
    ("node_timex_pps_shift_seconds", "Pulse per second interval duration.", "gauge"),
    ("node_timex_pps_stability_hertz", "Pulse per second stability, average of recent frequency changes.", "gauge"),
    ("node_timex_pps_jitter_total", "Pulse per second count of jitter limit exceeded events.", "counter"),
    ("node_timex_pps_calibration_total", "Pulse per second count of calibration intervals.", "counter"),
    ("node_timex_pps_error_total", "Pulse per second count of calibration errors.", "counter"),
    ("node_timex_pps_stability_exceeded_total", "Pulse per second count of stability limit exceeded events.",
     "counter"),
    ("node_timex_tai_offset_seconds", "International Atomic Time (TAI) offset.", "gauge"),
)


def timex_values(tx: Timex, state: int) -> dict[str, float]:
    """node_exporter 1.5's conversions (see NOTES in adjtimex(2))."""
    divisor = 1e9 if tx.status & STA_NANO else MICRO
    return {
        "node_timex_sync_status": 0.0 if state == TIME_ERROR else 1.0,
        "node_timex_offset_seconds": tx.offset / divisor,
        "node_timex_frequency_adjustment_ratio": 1 + tx.freq / PPM16,
        "node_timex_maxerror_seconds": tx.maxerror / MICRO,
        "node_timex_estimated_error_seconds": tx.esterror / MICRO,
        "node_timex_status": float(tx.status),
        "node_timex_loop_time_constant": float(tx.constant),
        "node_timex_tick_seconds": tx.tick / MICRO,
        "node_timex_pps_frequency_hertz": tx.ppsfreq / PPM16,
        "node_timex_pps_jitter_seconds": tx.jitter / divisor,
        "node_timex_pps_shift_seconds": float(tx.shift),
        "node_timex_pps_stability_hertz": tx.stabil / PPM16,
        "node_timex_pps_jitter_total": float(tx.jitcnt),
        "node_timex_pps_calibration_total": float(tx.calcnt),
        "node_timex_pps_error_total": float(tx.errcnt),
        "node_timex_pps_stability_exceeded_total": float(tx.stbcnt),
        "node_timex_tai_offset_seconds": float(tx.tai),
    }


class TimexCollector:
    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True) if name else None
        self.adjtimex = getattr(libc, "adjtimex", None)
        if self.adjtimex is None:
            log.info("no adjtimex(2) on this system; the timex collector exports nothing")

    def collect(self) -> Iterator[Metric]:
        if self.adjtimex is None:
            return
        tx = Timex()  # modes 0: read only
        state = self.adjtimex(ctypes.byref(tx))
        if state < 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:  # a sandbox that forbids it: no data, as node_exporter
                self.no_data = True
                return
            raise OSError(err, "adjtimex failed")
        self.no_data = False
        yield from families_of(TABLE, timex_values(tx, state))
