"""benchmarks/gpu_check.py --toy --parts sd15 against real ComfyUI: NC-SDEdit and SLR attention rows (no timing thresholds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from video_enhance_kit.host import find_comfyui

ROOT = Path(__file__).resolve().parents[2]


def test_toy_sd15_parts_run_nc_and_slr_through_comfyui(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--toy", "--parts", "sd15", "--comfyui", str(find_comfyui()),
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["errors"] == [] and data["dtype"] == "float32"
    nc, *slr = data["rows"]
    assert nc["check"] == "nc_sdedit" and nc["frames"] == 2 and nc["finite"] is True
    assert nc["expected_ratio"] == (2 + 3) / 2  # toy: 2 SDEdit steps, N = 3 calibration calls
    assert nc["ours_s"] > 0 and nc["baseline_s"] > 0 and nc["ratio"] == nc["ratio"] and nc["rounds"] == 1
    assert [r["frames"] for r in slr] == [2, 3, 4] and {r["check"] for r in slr} == {"slr_attention"}
    for row in slr:
        # the timed step ran trajectory attention in the patched model (the toy UNet: its finest decoder blocks, both CFG streams)
        assert row["trajectory_calls_per_run"] > 0 and row["finite"] is True
        assert row["ours_s"] > 0 and row["baseline_s"] > 0
        assert isinstance(row["ours_peak_bytes"], int) and isinstance(row["baseline_peak_bytes"], int)
    assert "nc_sdedit" in data["table"] and data["table"] in proc.stdout
