"""benchmarks/_bench.py helper logic on synthetic clocks (no timing thresholds)."""

import importlib.util
import io
import sys
import time
from pathlib import Path

import pytest
import torch

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "_bench.py"
_spec = importlib.util.spec_from_file_location("vek_bench", _path)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


class FakeClock:
    """A clock that only moves when a fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def work(self, seconds):
        def run():
            self.now += seconds() if callable(seconds) else seconds

        return run


def test_median_ratio_on_synthetic_timer():
    clock = FakeClock()
    res = bench.compare(clock.work(0.2), clock.work(0.1), warmup=2, repeats=5, timer=clock, memory=False, show=False)
    assert res.ratio == pytest.approx(2.0)
    assert res.median == pytest.approx(0.2) and res.baseline_median == pytest.approx(0.1)
    assert res.spread == pytest.approx(0.0) and len(res.times) == len(res.baseline_times) == 5


def test_one_slow_round_does_not_move_the_median_ratio():
    clock = FakeClock()
    durations = iter([0.3, 0.3, 5.0, 0.3, 0.3, 0.3, 0.3])  # warmup uses the first value; round 2 is an outlier
    res = bench.compare(clock.work(lambda: next(durations)), clock.work(0.1), warmup=1, repeats=5, timer=clock, memory=False, show=False)
    assert res.ratio == pytest.approx(3.0)
    assert max(res.times) == pytest.approx(5.0)
    assert res.spread == pytest.approx(0.0)  # IQR ignores the single outlier


def test_rounds_alternate_order_and_call_sync():
    clock, syncs = FakeClock(), []
    res = bench.compare(clock.work(1.0), clock.work(1.0), warmup=0, repeats=4, timer=clock, sync=lambda: syncs.append(1), memory=False, show=False)
    assert res.order == ["baseline", "fn", "fn", "baseline", "baseline", "fn", "fn", "baseline"]
    assert len(syncs) == 2 * len(res.order)  # before and after every timed call


def test_median_ratio_per_round_not_ratio_of_medians():
    # per-round ratios 2, 2, 0.5 -> median 2; medians alone would give 1.
    assert bench.median_ratio([2.0, 4.0, 1.0], [1.0, 2.0, 2.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bench.median_ratio([1.0], [])


def test_compare_rejects_bad_counts():
    with pytest.raises(ValueError):
        bench.compare(lambda: None, lambda: None, repeats=0, memory=False, show=False)


def test_print_table_aligns_dict_rows_and_fills_missing():
    out = io.StringIO()
    text = bench.print_table([{"label": "a", "ratio": "1.000"}, {"label": "longer", "peak": "2.0 MiB"}], file=out)
    lines = text.splitlines()
    assert lines[0].split() == ["label", "ratio", "peak"]
    assert lines[2].split() == ["a", "1.000", "-"] and lines[3].split() == ["longer", "-", "2.0", "MiB"]
    assert lines[0].index("ratio") == lines[2].index("1.000")
    assert out.getvalue().rstrip("\n") == text


def test_row_reports_ratio_and_memory():
    res = bench.Comparison("x", [0.2, 0.2], [0.1, 0.1], bench.MemoryPeak(2048, "m"), bench.MemoryPeak(1024, "m"))
    row = res.row()
    assert row["ratio"] == "2.000" and row["memory ratio"] == "2.000"
    assert row["peak"] == "2.0 KiB" and row["baseline peak"] == "1.0 KiB"


def test_format_bytes():
    assert bench.format_bytes(512) == "512 B"
    assert bench.format_bytes(1536) == "1.5 KiB"
    assert bench.format_bytes(3 * 1024**3) == "3.0 GiB"


def test_peak_memory_sees_a_large_cpu_allocation():
    torch.set_num_threads(1)
    size = 48 * 1024**2  # 48 MiB, held for a few sampling intervals

    def alloc():
        x = torch.ones(size // 4, dtype=torch.float32)
        time.sleep(0.05)
        return float(x[0])

    peak = bench.peak_memory(alloc, device="cpu")
    assert peak.method.startswith("cpu")
    assert peak.bytes >= size // 2
    small = bench.peak_memory(lambda: None, device="cpu")
    assert small.bytes < size // 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_counts_tensor_bytes():
    size = 64 * 1024**2
    peak = bench.peak_memory(lambda: torch.ones(size // 4, device="cuda").sum(), device="cuda")
    assert peak.method.startswith("cuda") and size <= peak.bytes < 2 * size
