"""Shared benchmark helper: time a callable against a baseline in one process, and measure peak memory.

Every ``benchmarks/bench_*.py`` script imports it (it runs as ``python benchmarks/bench_x.py``, so this
folder is on ``sys.path``)::

    from _bench import compare, peak_memory, print_table

    result = compare(lambda: ours(x), lambda: reference(x), warmup=1, repeats=7, label="NC, 3 iterations")
    print_table([result.row()])

``compare`` alternates the two callables round by round (baseline first in even rounds, ``fn`` first in odd
ones) so that drift in clock speed, caches or other load hits both alike, and reports the median of the
per-round ratios ``time(fn) / time(baseline)`` with each side's median and spread. Peak memory is measured in
separate calls after the timing (the memory probe would disturb the clock):

- CUDA: ``torch.cuda.max_memory_allocated()`` above the memory allocated before the call (tensors only,
  exact for torch's caching allocator).
- CPU: the process resident set size (RSS) peak above the RSS before the call, sampled every ~0.5 ms by a
  thread (psutil, else /proc/self/statm) and combined with ``ru_maxrss`` when the call raised the
  process's high-water mark. It counts every allocation (torch, numpy, Python), but memory the
  allocator kept from an earlier call and reuses is not new RSS, so it can under-report: run the
  heavier callable in a fresh process when the number matters. (tracemalloc does not see torch's
  CPU tensors, and torch has no CPU peak counter.)
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Comparison", "MemoryPeak", "compare", "format_bytes", "median_ratio", "peak_memory", "print_table"]


# --------------------------------------------------------------------------------------- memory
@dataclass
class MemoryPeak:
    """Peak memory of one call: ``bytes`` above what was in use before it, and how it was measured."""

    bytes: int
    method: str


def _cuda_in_use(device) -> bool:
    if device is not None:
        return torch.device(device).type == "cuda"
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _rss_reader() -> Callable[[], int] | None:
    """A function returning the current RSS in bytes (psutil, else /proc/self/statm), or None."""
    try:
        import psutil

        proc = psutil.Process()
        return lambda: proc.memory_info().rss
    except ImportError:
        pass
    if os.path.exists("/proc/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def read() -> int:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * page

        return read
    return None


def _maxrss_bytes() -> int:
    """The process's RSS high-water mark (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory(fn: Callable[[], object], device=None, interval: float = 0.0005) -> MemoryPeak:
    """Run ``fn()`` once and return its peak memory above the memory in use before the call.

    ``device``: ``"cuda"`` / ``"cpu"`` / None (CUDA when it is initialised, else CPU).
    """
    gc.collect()
    if _cuda_in_use(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return MemoryPeak(max(0, int(peak)), "cuda max_memory_allocated above allocated before")

    read = _rss_reader()
    high_before = _maxrss_bytes()
    if read is None:  # no way to sample: the high-water mark alone
        out = fn()
        del out
        return MemoryPeak(max(0, _maxrss_bytes() - high_before), "cpu ru_maxrss delta (a lower bound)")
    before = read()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], read())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out = fn()
        peak[0] = max(peak[0], read())
        del out
    finally:
        stop.set()
        thread.join()
    high_after = _maxrss_bytes()
    top = max(peak[0], high_after if high_after > high_before else 0)
    return MemoryPeak(max(0, int(top - before)), "cpu RSS peak above RSS before (sampled + ru_maxrss)")


# ---------------------------------------------------------------------------------------- timing
def _default_sync(device) -> Callable[[], None]:
    if _cuda_in_use(device):
        return torch.cuda.synchronize
    return lambda: None


def _time_once(fn, timer, sync) -> float:
    sync()
    start = timer()
    fn()
    sync()
    return timer() - start


def median_ratio(times: Sequence[float], baseline_times: Sequence[float]) -> float:
    """Median of the per-round ratios ``times[i] / baseline_times[i]`` (robust to one slow round)."""
    if len(times) != len(baseline_times) or not times:
        raise ValueError("need the same, non-zero number of rounds for both callables")
    return statistics.median(t / b if b > 0 else float("inf") for t, b in zip(times, baseline_times))


def _spread(values: Sequence[float]) -> float:
    """Interquartile range (0 for fewer than 2 values)."""
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


@dataclass
class Comparison:
    """Result of :func:`compare`: per-round times (seconds) of ``fn`` and the baseline, and peak memory."""

    label: str
    times: list[float]
    baseline_times: list[float]
    peak: MemoryPeak | None = None
    baseline_peak: MemoryPeak | None = None
    order: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_times)

    @property
    def ratio(self) -> float:
        """Median per-round ``time(fn) / time(baseline)``: 1.25 means 25 % slower than the baseline."""
        return median_ratio(self.times, self.baseline_times)

    @property
    def spread(self) -> float:
        return _spread(self.times)

    @property
    def baseline_spread(self) -> float:
        return _spread(self.baseline_times)

    def row(self) -> dict:
        """One table row: medians (ms), spreads (IQR, % of median), ratio and peak memory of each."""
        def pct(spread, median):
            return f"{100 * spread / median:.0f}%" if median > 0 else "-"

        row = {
            "label": self.label,
            "ms": f"{1e3 * self.median:.2f}",
            "iqr": pct(self.spread, self.median),
            "baseline ms": f"{1e3 * self.baseline_median:.2f}",
            "baseline iqr": pct(self.baseline_spread, self.baseline_median),
            "ratio": f"{self.ratio:.3f}",
            "rounds": str(len(self.times)),
        }
        if self.peak is not None and self.baseline_peak is not None:
            row["peak"] = format_bytes(self.peak.bytes)
            row["baseline peak"] = format_bytes(self.baseline_peak.bytes)
            row["memory ratio"] = f"{self.peak.bytes / self.baseline_peak.bytes:.3f}" if self.baseline_peak.bytes else "-"
        return row


def compare(
    fn: Callable[[], object],
    baseline: Callable[[], object],
    *,
    warmup: int = 1,
    repeats: int = 5,
    label: str = "",
    memory: bool = True,
    device=None,
    timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] | None = None,
    show: bool = True,
) -> Comparison:
    """Time ``fn`` against ``baseline`` in this process with alternating rounds; optionally measure peak memory.

    Args:
        fn, baseline: zero-argument callables (close over their inputs; build inputs outside).
        warmup: untimed calls of each before timing (compilation, caches, lazy imports).
        repeats: timed rounds; each round times both, the order alternating between rounds.
        memory: also run each once more under :func:`peak_memory`.
        device: ``"cuda"`` / ``"cpu"`` / None (CUDA when initialised): picks the synchronisation and memory probe.
        timer, sync: the clock and the barrier around each call (injectable for tests).
        show: print the one-row table.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    sync = sync or _default_sync(device)
    for _ in range(warmup):
        baseline()
        fn()
    result = Comparison(label=label, times=[], baseline_times=[])
    for r in range(repeats):
        pair = (("baseline", baseline), ("fn", fn)) if r % 2 == 0 else (("fn", fn), ("baseline", baseline))
        for name, call in pair:
            elapsed = _time_once(call, timer, sync)
            (result.baseline_times if name == "baseline" else result.times).append(elapsed)
            result.order.append(name)
    if memory:
        result.baseline_peak = peak_memory(baseline, device)
        result.peak = peak_memory(fn, device)
    if show:
        print_table([result.row()])
        if result.peak is not None:
            print(f"  memory: {result.peak.method}")
    return result


# ---------------------------------------------------------------------------------------- tables
def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def print_table(rows: Sequence[dict] | Sequence[Sequence], header: Sequence[str] | None = None, file=None) -> str:
    """Print ``rows`` (dicts, or sequences with ``header``) as an aligned plain-text table; return the text.

    Columns are the union of the dicts' keys in first-seen order; a missing cell prints as ``-``.
    """
    rows = list(rows)
    if rows and isinstance(rows[0], dict):
        header = list(dict.fromkeys(k for row in rows for k in row))
        cells = [[str(row.get(k, "-")) for k in header] for row in rows]
    else:
        header = list(header or [])
        cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells if i < len(r)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    text = "\n".join(lines)
    print(text, file=file or sys.stdout)
    return text
