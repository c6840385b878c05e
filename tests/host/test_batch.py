"""The batch command on real ComfyUI: 4 inputs through nc_sdedit_sd15 (tiny models, 3 steps) on 2 local Ray
actors give the same decoded frames as 4 single in-process runs with the same seeds (the workflow's own)."""

from __future__ import annotations

import importlib.util
import io
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install \"video-enhance-kit[ray]\"")

from video_enhance_kit.cli import build_parser, load_workflow  # noqa: E402
from video_enhance_kit.host.batch_cmd import cmd_batch  # noqa: E402
from video_enhance_kit.host.batch_worker import ComfyRunnerFactory  # noqa: E402
from video_enhance_kit.host.manifest import Manifest  # noqa: E402
from video_enhance_kit.host.video_io import synthetic_clip  # noqa: E402

HOST = Path(__file__).parent
WORKFLOW = HOST.parents[1] / "example_workflows" / "nc_sdedit_sd15.json"
MAX_STEPS = 3


def _decoded_digest():
    spec = importlib.util.spec_from_file_location("vek_workflow_hashes", HOST / "test_workflow_hashes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.decoded_digest


def test_four_inputs_on_two_actors_match_four_single_runs(tmp_path, comfy_host, run_workflow):
    digest = _decoded_digest()
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(4):
        synthetic_clip(inputs / f"clip{k}.mp4", frames=5, size=(32, 32), seed=k, fps=Fraction(8))
    single = {}
    for clip in sorted(inputs.iterdir()):
        shutil.copy(clip, Path(comfy_host.input_dir) / clip.name)
        result = run_workflow(WORKFLOW, tiny=True, max_steps=MAX_STEPS, fresh=True, overrides={"2.file": clip.name})
        single[clip.stem] = sorted(digest(p) for p in result.files)

    args = build_parser().parse_args(["batch", str(WORKFLOW), "--inputs", str(inputs), "--workers", "2", "--tiny",
                                      "--max-steps", str(MAX_STEPS), "--out", str(tmp_path / "out"), "-q"])
    factory = ComfyRunnerFactory(str(comfy_host.comfyui), tiny=True, max_steps=MAX_STEPS, threads=torch.get_num_threads())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        out = io.StringIO()
        assert cmd_batch(args, load_workflow(WORKFLOW), out, io.StringIO(), factory=factory) == 0, out.getvalue()
    finally:
        ray.shutdown()
    records = Manifest(tmp_path / "out" / "manifest.jsonl").records()
    assert {r["worker"] for r in records} == {"w0", "w1"}
    for r in records:
        assert [e["path"] for e in r["outputs"]] == [f"{r['name']}/video/nc_sdedit_sd15_00001_.mp4"]  # a single run's name
        batch = sorted(digest(tmp_path / "out" / e["path"]) for e in r["outputs"])
        assert batch == single[r["name"]], r["name"]
    assert len({tuple(d) for d in single.values()}) == 4  # four different inputs, four different results
