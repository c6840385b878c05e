"""benchmarks/gpu_check.py without ComfyUI: the CPU refusal, the toy VEnhancer part's table and JSON, staging (no timing thresholds)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # gpu_check puts benchmarks/ on sys.path for its helpers
    return module


gpu_check = _load("gpu_check")
stage = _load("_gpu_stage")


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=full_env, cwd=ROOT, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run instead of refusing")
def test_refuses_on_cpu_with_one_line_and_exit_2():
    proc = run_script()
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [gpu_check.REFUSAL]
    assert "--toy" in gpu_check.REFUSAL and "CUDA" in gpu_check.REFUSAL


def test_toy_venhancer_part_writes_the_table_and_json(tmp_path):
    proc = run_script("--toy", "--parts", "venhancer", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["columns"] == list(gpu_check.ROW_KEYS) and data["errors"] == []
    assert data["device"] == "cpu" and data["dtype"] == "float32" and data["sizes"]["toy"] is True
    rows = data["rows"]
    assert [r["frames"] for r in rows] == [4, 8]
    for row in rows:
        assert set(gpu_check.ROW_KEYS) <= set(row) and row["check"] == "venhancer" and row["finite"] is True
        # windows of 4 frames (50 % overlap): 8 frames -> 3 windows; 2 steps, CFG -> 2 calls per window and step
        assert row["calls"] == row["windows"] * 2 * 2
        assert row["s_per_call"] == pytest.approx(row["ours_s"] / row["calls"])
        assert row["ours_peak_bytes"] >= 0 and row["baseline_s"] is None
    assert [r["windows"] for r in rows] == [1, 3]
    table = (tmp_path / "gpu_check.txt").read_text()
    assert table.strip() == data["table"].strip() and data["table"] in proc.stdout
    header = table.splitlines()[0].split()
    assert header[:3] == ["check", "case", "frames"] and "s/call" in header and "windows" in header


def test_missing_comfyui_is_an_environment_error(tmp_path):
    proc = run_script("--toy", "--parts", "sd15", "--out", str(tmp_path), env={"COMFYUI_PATH": str(tmp_path / "nowhere")})
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("gpu_check: COMFYUI_PATH=")
    assert json.loads((tmp_path / "gpu_check.json").read_text())["errors"]


def test_toy_sizes_shrink_every_size():
    full, toy = gpu_check.Sizes(), gpu_check.TOY
    assert (full.latent, full.nc_frames, full.slr_frames, full.ve_frames, full.ve_latent) == (64, 16, (8, 16, 32), (32, 64), (90, 160))
    assert toy.toy and toy.latent < full.latent and max(toy.slr_frames) < min(full.slr_frames)
    assert max(toy.ve_frames) <= 2 * toy.ve_chunk and toy.steps < full.steps and toy.repeats == 1
    args = gpu_check.parse_args(["--toy", "--steps", "3", "--slr-frames", "2", "5"])
    assert gpu_check.sizes_from(args).steps == 3 and gpu_check.sizes_from(args).slr_frames == (2, 5)


def test_table_has_one_column_per_row_key_and_an_error_column_only_on_failure():
    row = {**dict.fromkeys(gpu_check.ROW_KEYS), "check": "nc_sdedit", "ours_s": 1.5, "ratio": 1.3, "ours_peak_bytes": 3 * 2**30}
    text = gpu_check.table_text([row])
    assert "1.50" in text and "1.300" in text and "3.0 GiB" in text and "error" not in text.splitlines()[0]
    assert "error" in gpu_check.table_text([row, {**row, "error": "RuntimeError: boom"}]).splitlines()[0]


def test_stage_copies_comfyui_source_without_models_tests_or_tokenizer_data(tmp_path):
    src = tmp_path / "ComfyUI"
    for rel in ("main.py", "nodes.py", "comfy/sd.py", "comfy/sd1_tokenizer/vocab.json", "comfy/ldm/cosmos/cosmos_tokenizer/layers.py",
                "comfy/__pycache__/sd.cpython-311.pyc", "models/checkpoints/big.safetensors", "tests/test_x.py",
                "custom_nodes/other/__init__.py", "comfy_extras/nodes_x.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    out = stage.copy_comfyui(src, tmp_path / "carry" / "ComfyUI")
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == ["comfy/ldm/cosmos/cosmos_tokenizer/layers.py", "comfy/sd.py", "comfy_extras/nodes_x.py", "main.py", "nodes.py"]
    assert (out / "custom_nodes").is_dir() and stage.tree_size(out) == 5
    assert {w.split("==")[0] for w in stage.WHEELS} == {"torchsde", "trampoline", "av", "kornia", "kornia_rs"}
