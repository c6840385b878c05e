"""Memory measurement (utils/memory.py), the runner's printing of a node's memory report, weight bytes, relative RMS."""

from __future__ import annotations

import io
import json
import time

import pytest
import torch
from video_enhance_kit.host.progress import ProgressPrinter
from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.memory import (
    UI_KEY,
    PeakMemory,
    memory_ui,
    report_lines,
    ui_reports,
    weight_bytes,
    weight_bytes_by_dtype,
)
from video_enhance_kit.utils.metrics import relative_rms

MB = 1024**2
PHASES = ("encode", "sampling", "decode")


def touch(megabytes: int) -> torch.Tensor:
    """A tensor of ``megabytes`` whose pages are written (so they count in RSS)."""
    return torch.ones(megabytes * MB // 4)


# ------------------------------------------------------------------------------------------- CPU
def test_cpu_phases_report_the_rss_peak_of_each_phase():
    peak = PeakMemory(PHASES)
    with peak.phase("encode"):
        small = touch(4)
    with peak.phase("sampling"):
        big = touch(256)
        time.sleep(0.05)  # the sampler thread reads RSS every 5 ms
        del big  # freed before the phase ends: the sampled peak still holds it
    report = peak.report()
    encode, sampling, decode = report["phases"]
    assert report["measure"] == "rss" and report["device"] == "cpu"
    assert sampling["peak_bytes"] - sampling["start_bytes"] >= 200 * MB
    assert encode["peak_bytes"] - encode["start_bytes"] < 100 * MB
    assert decode == {"name": "decode", "peak_bytes": None}
    assert report["peak_bytes"] == max(encode["peak_bytes"], sampling["peak_bytes"])
    assert json.loads(json.dumps(report)) == report
    del small


def test_a_phase_measured_twice_keeps_the_larger_peak_and_adds_the_time():
    peak = PeakMemory(["sampling"])
    with peak.phase("sampling"):
        x = touch(128)
        time.sleep(0.02)
    del x
    first = peak.report()["phases"][0]
    with peak.phase("sampling"):
        time.sleep(0.02)
    second = peak.report()["phases"][0]
    assert second["peak_bytes"] >= first["peak_bytes"]
    assert second["seconds"] >= first["seconds"] + 0.015


def test_phases_are_checked():
    with pytest.raises(ValueError, match="distinct"):
        PeakMemory(["a", "a"])
    peak = PeakMemory(PHASES)
    with pytest.raises(ValueError, match="unknown phase 'vae'"):
        with peak.phase("vae"):
            pass


def test_the_phase_is_recorded_when_the_block_raises():
    peak = PeakMemory(PHASES)
    with pytest.raises(RuntimeError):
        with peak.phase("encode"):
            raise RuntimeError("interrupted")
    assert peak.report()["phases"][0]["peak_bytes"] > 0


# ------------------------------------------------------------------------------------ CUDA (faked)
class FakeCuda:
    """torch.cuda's memory API as a counter: allocations go through ``alloc``."""

    def __init__(self):
        self.allocated, self.peak, self.resets = 1000, 1000, 0

    def alloc(self, n):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def install(self, monkeypatch):
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(cuda, "max_memory_reserved", lambda device=None: self.peak + 512)
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", self.reset)

    def reset(self, device=None):
        self.resets += 1
        self.peak = self.allocated


def test_cuda_phases_reset_the_peak_and_read_max_memory_allocated(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    peak = PeakMemory(PHASES, device="cuda:0")
    with peak.phase("encode"):
        fake.alloc(5000)
        fake.alloc(-5000)
    with peak.phase("sampling"):
        fake.alloc(300)  # lower than the encode peak: the reset per phase shows it
    report = peak.report()
    encode, sampling, _ = report["phases"]
    assert fake.resets == 2 and report["measure"] == "allocated" and report["source"] == "torch.cuda.max_memory_allocated"
    assert (encode["peak_bytes"], encode["start_bytes"], encode["reserved_bytes"]) == (6000, 1000, 6512)
    assert (sampling["peak_bytes"], sampling["start_bytes"]) == (1300, 1000)
    assert report["peak_bytes"] == 6000


# ------------------------------------------------------------------------------- report and runner
REPORT = {"device": "cuda:0", "measure": "allocated", "source": "torch.cuda.max_memory_allocated", "peak_bytes": 3 * 1024**3,
          "phases": [{"name": "encode", "peak_bytes": 1024**3, "start_bytes": 512 * MB, "seconds": 1.5},
                     {"name": "sampling", "peak_bytes": 3 * 1024**3, "start_bytes": 1024**3, "seconds": 20.0},
                     {"name": "decode", "peak_bytes": None}]}


def test_report_lines_name_each_phase_with_gib_and_seconds():
    lines = report_lines(REPORT)
    assert lines[0] == "peak memory (torch allocated on cuda:0; torch.cuda.max_memory_allocated): 3.00 GiB"
    assert lines[1] == "  encode    1.00 GiB (at start 0.50 GiB), 1.50 s"
    assert lines[2] == "  sampling  3.00 GiB (at start 1.00 GiB), 20.00 s"
    assert lines[3] == "  decode    not run"


def test_ui_reports_reads_only_well_formed_reports():
    assert ui_reports(memory_ui(REPORT)) == [REPORT]
    assert ui_reports({"images": []}) == [] and ui_reports(None) == []
    assert ui_reports({UI_KEY: ["text", {"phases": "x"}]}) == []


def test_the_runner_prints_a_nodes_memory_report_when_it_has_executed():
    stream = io.StringIO()
    printer = ProgressPrinter({"5": {"class_type": "VEK_VEnhancerUpscale"}}, stream=stream)
    printer.event("executing", {"node": "5"})
    printer.event("executed", {"node": "5", "output": {"images": [], **memory_ui(REPORT)}})
    printer.event("executed", {"node": "6", "output": {"images": [{"filename": "a.png"}]}})  # no report: nothing printed
    text = stream.getvalue().splitlines()
    assert text[0] == "running node 5 (VEK_VEnhancerUpscale)"
    assert text[1].startswith("node 5 (VEK_VEnhancerUpscale) peak memory (torch allocated on cuda:0;")
    assert text[2:5] == report_lines(REPORT)[1:]
    assert len(text) == 5 and printer.memory_reports == [("5", REPORT)]


def test_the_runner_marks_a_cached_report_and_keeps_reports_when_quiet():
    stream = io.StringIO()
    printer = ProgressPrinter({"5": {"class_type": "VEK_VEnhancerUpscale"}}, stream=stream)
    printer.event("execution_cached", {"nodes": ["5"]})
    printer.event("executed", {"node": "5", "output": memory_ui(REPORT)})
    assert "node 5 (VEK_VEnhancerUpscale) peak memory (cached, from its earlier run)" in stream.getvalue()
    quiet = ProgressPrinter({}, stream=(silent := io.StringIO()), quiet=True)
    quiet.event("executed", {"node": "5", "output": memory_ui(REPORT)})
    assert silent.getvalue() == "" and quiet.memory_reports == [("5", REPORT)]


# --------------------------------------------------------------------------------- weights (fp8)
def test_weight_bytes_counts_parameters_and_buffers_once():
    lin = torch.nn.Linear(10, 20)
    assert weight_bytes(lin) == (200 + 20) * 4
    bn = torch.nn.BatchNorm2d(8)  # weight, bias + running_mean, running_var (fp32), num_batches_tracked (int64)
    assert weight_bytes(bn) == 4 * 8 * 4 + 8
    tied = torch.nn.Sequential(lin, torch.nn.Linear(20, 10))
    tied[1].weight = torch.nn.Parameter(lin.weight.t())  # a different tensor: counted
    shared = torch.nn.Sequential(lin, lin)  # the same module twice: counted once
    assert weight_bytes(shared) == weight_bytes(lin)
    assert weight_bytes(tied) == weight_bytes(lin) + 200 * 4 + 10 * 4


def test_fp8_storage_is_half_of_fp16_also_on_meta():
    with torch.device("meta"):
        net = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3), torch.nn.Linear(512, 512))
    fp16 = weight_bytes(net.to(torch.float16))
    fp8 = weight_bytes(net.to(torch.float8_e4m3fn))
    assert fp16 == 2 * (64 * 64 * 9 + 64 + 512 * 512 + 512) and fp8 * 2 == fp16
    assert weight_bytes_by_dtype(net) == {"torch.float8_e4m3fn": fp8}


def test_relative_rms():
    ref = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    assert float(relative_rms(ref * 1.01, ref)) == pytest.approx(0.01, rel=1e-4)
    assert float(relative_rms(ref.half(), ref)) < 1e-3
    zero = torch.zeros(3)
    assert float(relative_rms(zero, zero)) == 0.0 and float(relative_rms(zero + 1, zero)) == float("inf")
    with pytest.raises(InputError, match="does not match"):
        relative_rms(ref, ref[:2])

