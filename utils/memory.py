"""Memory measurement: peak memory per phase of a node (a report) and the weight memory of a module (pure torch).

:class:`PeakMemory` measures named phases (``with peak.phase("sampling"): ...``):

- on a CUDA device: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats`` at the
  phase's start (exact: the allocator's own high-water mark of tensor memory; the reserved peak,
  ``max_memory_reserved``, is kept too);
- elsewhere (CPU): the process's resident set size (RSS), sampled by a background thread every
  ``interval`` seconds (default 5 ms) during the phase, plus a reading at its start and end. RSS comes
  from psutil (ComfyUI ships it), else ``/proc/self/statm``. ``resource.getrusage``'s ``ru_maxrss`` is
  not used: it is the process's peak so far and never goes down, so a later phase could not show a
  lower peak. A sampled peak can miss a spike shorter than the interval.

The report is a plain dict (:meth:`PeakMemory.report`, JSON-safe) and text lines (:func:`report_lines`).
A node hands it back in its UI output under :data:`UI_KEY` (``ui={UI_KEY: [report]}``, see
:func:`memory_ui`); the headless runner prints every such report when the node has executed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import torch

#: The key of a node's UI output that holds its memory reports (a list of :meth:`PeakMemory.report` dicts).
UI_KEY = "vek_memory"
GIB = 1024**3


# ------------------------------------------------------------------------------------------- RSS
def _rss_reader():
    """A function returning this process's RSS in bytes, and its name."""
    try:
        import psutil

        process = psutil.Process()
        return (lambda: process.memory_info().rss), "psutil"
    except ImportError:
        pass
    if os.path.exists("/proc/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def statm() -> int:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * page

        return statm, "/proc/self/statm"
    return (lambda: 0), "unavailable"


class RssSampler:
    """Peak RSS between ``start()`` and ``stop()``, sampled by a daemon thread every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.read, self.source = _rss_reader()
        self.peak = self.first = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.read())

    def start(self) -> int:
        self.first = self.peak = self.read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vek-rss-sampler", daemon=True)
        self._thread.start()
        return self.first

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.read())
        return self.peak


# -------------------------------------------------------------------------------------- phases
def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


class PeakMemory:
    """Peak memory of the named ``phases`` (in the order given), on ``device`` (CUDA: allocator; else RSS).

    Each phase is measured by ``with self.phase(name):``; a phase measured twice keeps the larger peak and
    adds the seconds. A phase never entered is reported as not run.
    """

    def __init__(self, phases: Sequence[str], device=None, interval: float = 0.005):
        if not phases or len(set(phases)) != len(phases):
            raise ValueError(f"phases must be distinct names, got {list(phases)!r}")
        self.phases = list(phases)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cuda = _is_cuda(self.device)
        self.interval = interval
        self.sampler = None if self.cuda else RssSampler(interval)
        self.measured: dict[str, dict] = {}

    @property
    def measure(self) -> str:
        return "allocated" if self.cuda else "rss"

    @property
    def source(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated"
        return f"{self.sampler.source} sampled every {self.interval * 1000:g} ms"

    def _start(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        return self.sampler.start()

    def _stop(self) -> tuple[int, int | None]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device)
        return self.sampler.stop(), None

    @contextmanager
    def phase(self, name: str):
        """Measure the block as phase ``name`` (one of :attr:`phases`)."""
        if name not in self.phases:
            raise ValueError(f"unknown phase {name!r}; the phases are {self.phases}")
        start, t0 = self._start(), time.perf_counter()
        try:
            yield self
        finally:
            peak, reserved = self._stop()
            self._record(name, start, peak, reserved, time.perf_counter() - t0)

    def _record(self, name: str, start: int, peak: int, reserved: int | None, seconds: float) -> None:
        entry = {"name": name, "peak_bytes": int(peak), "start_bytes": int(start), "seconds": round(seconds, 4)}
        if reserved is not None:
            entry["reserved_bytes"] = int(reserved)
        old = self.measured.get(name)
        if old is not None:
            entry["seconds"] = round(old["seconds"] + seconds, 4)
            if old["peak_bytes"] > entry["peak_bytes"]:
                entry.update(peak_bytes=old["peak_bytes"], start_bytes=old["start_bytes"])
        self.measured[name] = entry

    def report(self) -> dict:
        """``{"device", "measure" ("allocated" | "rss"), "source", "peak_bytes", "phases": [{name, peak_bytes,
        start_bytes, seconds[, reserved_bytes]} or {name, "peak_bytes": None} for a phase not run]}``."""
        phases = [self.measured.get(n, {"name": n, "peak_bytes": None}) for n in self.phases]
        peaks = [p["peak_bytes"] for p in phases if p["peak_bytes"] is not None]
        return {"device": str(self.device), "measure": self.measure, "source": self.source,
                "peak_bytes": max(peaks) if peaks else None, "phases": phases}

    def lines(self, title: str = "peak memory") -> list[str]:
        return report_lines(self.report(), title)


# -------------------------------------------------------------------------------------- reports
def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f} GiB"


def report_lines(report: dict, title: str = "peak memory") -> list[str]:
    """The report as text: a head line, then one line per phase (a report dict from a node or JSON)."""
    what = "torch allocated on" if report.get("measure") == "allocated" else "process RSS,"
    lines = [f"{title} ({what} {report.get('device', '?')}; {report.get('source', '?')}): {gib(report.get('peak_bytes'))}"]
    width = max((len(str(p.get("name", ""))) for p in report.get("phases", [])), default=0)
    for p in report.get("phases", []):
        name = str(p.get("name", "?")).ljust(width)
        if p.get("peak_bytes") is None:
            lines.append(f"  {name}  not run")
            continue
        extra = f", reserved {gib(p['reserved_bytes'])}" if "reserved_bytes" in p else ""
        lines.append(f"  {name}  {gib(p['peak_bytes'])} (at start {gib(p.get('start_bytes'))}{extra}), {p.get('seconds', 0):.2f} s")
    return lines


def memory_ui(*reports: dict) -> dict:
    """A node's UI output carrying ``reports`` (merge it into the node's ``ui`` dict)."""
    return {UI_KEY: list(reports)}


def ui_reports(ui: dict | None) -> list[dict]:
    """The memory reports in a node's UI output (``[]`` when it has none or they are malformed)."""
    found = (ui or {}).get(UI_KEY) if isinstance(ui, dict) else None
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("phases"), list)] if isinstance(found, list) else []


# -------------------------------------------------------------------------------------- weights
def tensors_of(module: torch.nn.Module) -> Iterable[torch.Tensor]:
    """Every parameter and buffer of ``module`` once (shared ones counted once)."""
    seen: set[int] = set()
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            yield t


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's parameters and buffers, ``sum numel * element_size`` (meta tensors count too)."""
    return sum(t.numel() * t.element_size() for t in tensors_of(module))


def weight_bytes_by_dtype(module: torch.nn.Module) -> dict[str, int]:
    """:func:`weight_bytes` split by dtype, e.g. ``{"torch.float8_e4m3fn": ..., "torch.float16": ...}``."""
    out: dict[str, int] = {}
    for t in tensors_of(module):
        out[str(t.dtype)] = out.get(str(t.dtype), 0) + t.numel() * t.element_size()
    return out
