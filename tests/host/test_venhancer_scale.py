"""VEnhancer at a user's scale (issue 13): the memory report in the node's output and printed by the runner; chunk_length auto."""

import io
import logging
from pathlib import Path

import pytest
import torch
from video_enhance_kit.host import describe_missing_comfyui, find_comfyui

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

import importlib.util

_spec = importlib.util.spec_from_file_location("vek_test_venhancer_native_scale", Path(__file__).with_name("test_venhancer_native.py"))
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
clip, condition, native, parts = _shared.clip, _shared.condition, _shared.native, _shared.parts  # parts: the module fixture

ROOT = Path(__file__).resolve().parents[2]
UPSCALE = ROOT / "example_workflows" / "venhancer_upscale.json"
NATIVE = ROOT / "example_workflows" / "venhancer_native.json"


def phases(report):
    return [p["name"] for p in report["phases"] if p["peak_bytes"] is not None]


def test_upscale_memory_report_is_in_its_output_and_printed_by_the_runner(comfy_host, run_workflow, tmp_path):
    from video_enhance_kit import cli

    result = run_workflow(UPSCALE, tiny=True, max_steps=2, fresh=True)
    (report,) = result.outputs["8"]["vek_memory"]
    assert phases(report) == ["encode", "sampling", "decode"]
    assert report["measure"] == "rss" and all(p["peak_bytes"] > 2**20 and p["seconds"] > 0 for p in report["phases"])
    assert report["peak_bytes"] == max(p["peak_bytes"] for p in report["phases"])
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["run", str(UPSCALE), "--comfyui", str(comfy_host.comfyui), "--tiny", "--max-steps", "2", "--set", "8.seed=1", "--out", str(tmp_path)],
                    out=out, err=err)
    text = err.getvalue()
    assert code == cli.EXIT_OK, text
    assert "node 8 (VEK_VEnhancerUpscale) peak memory (process RSS," in text
    for name in ("encode", "sampling", "decode"):
        assert f"  {name}" in text.split("VEK_VEnhancerUpscale) peak memory", 1)[1]


def test_native_pieces_report_encode_and_decode(run_workflow):
    result = run_workflow(NATIVE, tiny=True, max_steps=2, fresh=True)
    found = {node: phases(ui["vek_memory"][0]) for node, ui in result.outputs.items() if "vek_memory" in ui}
    assert sorted(found.values()) == [["decode"], ["encode"]]


def pack_module(model):
    import sys

    return sys.modules[type(model.model).__module__]


def model_call_shapes(run_node, model, piece):
    """(frames, h, w) of every network call while sampling ``piece`` with ``model``."""
    shapes = []
    hook = model.model.diffusion_model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[2:])) and None)
    try:
        out, _ = native(run_node, model, *piece, sampler_name="euler")
    finally:
        hook.remove()
    assert torch.isfinite(out["samples"]).all()
    return shapes


@pytest.fixture(scope="module")
def big_piece(run_node, parts):  # noqa: F811
    pos, neg, latent = condition(run_node, parts, clip(frames=9, h=256, w=256))  # interp 1: 17 frames of 32x32 latents
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="normal", steps=2, start_timestep=899)
    return pos, neg, latent, sigmas


def free_memory(monkeypatch, M, free: float) -> None:
    """ComfyUI's get_free_memory reports ``free`` bytes (its attention asks for (total, torch) too)."""
    monkeypatch.setattr(M.mm, "get_free_memory", lambda dev=None, torch_free_too=False: (free, free) if torch_free_too else free)


@pytest.mark.parametrize("auto_fit", ["auto", "auto + tiles"])
def test_auto_fit_chooses_from_free_memory_and_prints_it(run_node, parts, big_piece, monkeypatch, caplog, auto_fit):  # noqa: F811
    M = pack_module(parts["model"])
    frames, h, w = big_piece[2]["samples"].shape[2:]
    assert frames == 17 and h * w >= 32 * 32
    per = M.bytes_per_frame_pixel(parts["model"].model.venhancer_config.model_channels, 4)  # fp32 on CPU
    room = per * 9 * h * w * 1.01 if auto_fit == "auto" else per * frames * h * w * 0.5  # 9 whole frames; half the latent
    free_memory(monkeypatch, M, M.HEADROOM_BYTES + room)
    (model,) = run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=4, auto_fit=auto_fit)
    with caplog.at_level(logging.INFO):
        shapes = model_call_shapes(run_node, model, big_piece)
    (line,) = [r.getMessage() for r in caplog.records if "VEnhancer Windows auto" in r.getMessage()]
    if auto_fit == "auto":  # a shorter window, the whole frame
        assert {s[1:] for s in shapes} == {(h, w)} and 7 <= max(s[0] for s in shapes) <= 9
        assert "no tiles" in line and "chunk_length " in line and f"(clip 17 frames of {h}x{w} latents)" in line
    else:  # the whole clip in one window (17 <= 32), tiles of at most half the latent
        tiles = {s[1:] for s in shapes}
        assert {s[0] for s in shapes} == {17} and all(a * b <= h * w / 2 for a, b in tiles) and max(a * b for a, b in tiles) >= h * w / 4
        assert "chunk_length 17" in line and "tiles " in line
    assert f"{(M.HEADROOM_BYTES + room) / 2**30:.2f} GiB free" in line


def test_auto_fit_says_when_nothing_fits_and_off_keeps_the_settings(run_node, parts, big_piece, monkeypatch):  # noqa: F811
    M = pack_module(parts["model"])
    free_memory(monkeypatch, M, M.HEADROOM_BYTES + 1024)
    (model,) = run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=8, auto_fit="auto")
    with pytest.raises(Exception, match="input 'chunk_length'.*GiB is free"):
        model_call_shapes(run_node, model, big_piece)
    (off,) = run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=8, auto_fit="off")
    assert {s for s in model_call_shapes(run_node, off, big_piece)} == {tuple(big_piece[2]["samples"].shape[2:])}  # free memory not read
    with pytest.raises(Exception, match="input 'auto_fit'"):
        run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=8, auto_fit="maybe")
