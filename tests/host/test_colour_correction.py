"""Colour Correction (VEK_ColourCorrection) inside real ComfyUI."""

from __future__ import annotations

import pytest
import torch

NODE = "VEK_ColourCorrection"
SHIFT = torch.tensor([0.08, -0.06, 0.04])


def frames(count=5, h=24, w=32, seed=0) -> torch.Tensor:
    """IMAGE [F, H, W, 3] in 0.2..0.8."""
    return 0.2 + 0.6 * torch.rand(count, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["wavelet", "adain", "histogram"])
def test_node_matches_the_core_and_keeps_the_results_size(run_node, pack, mode):
    source = frames()
    result = torch.nn.functional.interpolate((source + SHIFT).movedim(-1, 1), scale_factor=2, mode="bilinear").movedim(1, -1)
    (out,) = run_node(NODE, result=result, source=source, mode=mode, strength=1.0, levels=3)
    assert out.shape == result.shape and out.dtype == torch.float32
    core = pack("utils.colour").colour_correct(result.movedim(-1, 1), source.movedim(-1, 1), mode, 1.0, 3).movedim(1, -1)
    assert torch.allclose(out, core, atol=1e-6)
    # the drift is gone: per-channel means back to the source's within 2/255 (the source resized by bicubic)
    assert (out.mean((0, 1, 2)) - source.mean((0, 1, 2))).abs().max() < 2 / 255


def test_adain_brings_a_shifted_copy_back_within_one_level(run_node):
    source = frames(seed=1)
    (out,) = run_node(NODE, result=source + SHIFT, source=source, mode="adain", strength=1.0, levels=5)
    assert (out.mean((1, 2)) - source.mean((1, 2))).abs().max() < 1 / 255


@pytest.mark.parametrize(
    ("result", "source", "words"),
    [
        (frames(3), frames(2), "input 'source': has 2 frames, 'result' has 3"),
        (frames(3)[:0], frames(3), "input 'result': is empty"),
        (frames(3), frames(3)[0], "input 'source': expected a 4-D tensor"),
        (frames(3).index_fill(1, torch.tensor([2]), float("nan")), frames(3), "input 'result': contains"),
    ],
)
def test_bad_inputs_give_clear_errors(run_node, result, source, words):
    with pytest.raises(Exception, match=words) as err:
        run_node(NODE, result=result, source=source, mode="wavelet", strength=1.0, levels=5)
    assert "Fix:" in str(err.value)


def test_after_a_sampler_in_a_prompt_with_a_smaller_source(run_prompt, sd15_prompt):
    p = sd15_prompt(frames=3, size=32, steps=2)
    p["20"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["6", 0], "upscale_method": "area", "scale_by": 0.5}}
    p["21"] = {"class_type": NODE, "inputs": {"result": ["6", 0], "source": ["20", 0], "mode": "wavelet", "strength": 0.8, "levels": 5}}
    p["7"]["inputs"]["images"] = ["21", 0]
    result = run_prompt(p)
    assert "21" in result.timings and len(result.outputs["7"]["images"]) == 3
