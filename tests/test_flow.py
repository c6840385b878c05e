"""Optical flow (utils/flow.py): classical and RAFT estimators, occlusion masks, resizing."""

import pytest
import torch
from kornia.filters import gaussian_blur2d

from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.flow import (
    VideoFlow,
    consistency_mask,
    end_point_error,
    estimate_flow,
    resize_flow,
)
from video_enhance_kit.utils.warp import warp


def shifted_video(gen, shift, frames=3, h=48, w=64, pad=16):
    """A textured image moved by ``shift = (dx, dy)`` px per frame (content enters at the border)."""
    big = gaussian_blur2d(torch.rand(1, 3, h + 2 * pad, w + 2 * pad, generator=gen), (9, 9), (2.0, 2.0))
    big = (big - big.amin()) / (big.amax() - big.amin())
    out = []
    for i in range(frames):
        flow = torch.zeros(1, 2, h + 2 * pad, w + 2 * pad)
        flow[:, 0], flow[:, 1] = -shift[0] * i, -shift[1] * i
        out.append(warp(big, flow)[..., pad : pad + h, pad : pad + w])
    return torch.cat(out)


def constant(shift, like):
    return torch.tensor(shift, dtype=like.dtype).view(1, 2, 1, 1).expand_as(like)


@pytest.mark.parametrize("shift", [(1.3, -0.7), (0.4, 0.25), (-2.6, 1.8)])
def test_classical_recovers_subpixel_shift(gen, shift):
    video = shifted_video(gen, shift)
    flow = estimate_flow(video, "classical")
    assert isinstance(flow, VideoFlow) and flow.forward.shape == (2, 2, 48, 64) and flow.valid_forward.shape == (2, 1, 48, 64)
    assert end_point_error(flow.forward, constant(shift, flow.forward)) < 0.5
    assert end_point_error(flow.backward, -constant(shift, flow.backward)) < 0.5
    # away from the uncovered border it is much better than the bound
    assert end_point_error(flow.forward, constant(shift, flow.forward), flow.valid_forward) < 0.15


def test_true_warp_has_near_zero_warping_error(gen):
    shift = (1.3, -0.7)
    video = shifted_video(gen, shift)
    true_back = -constant(shift, torch.zeros(2, 2, 48, 64))
    mask = consistency_mask(true_back, -true_back)  # occlusion of the true flow: the uncovered border
    warped = warp(video[:-1], true_back)  # frame i in frame i+1's coordinates
    err = ((warped - video[1:]).abs() * mask).sum() / (mask.sum() * 3)
    assert err < 2e-3
    unwarped = ((video[:-1] - video[1:]).abs() * mask).sum() / (mask.sum() * 3)
    assert unwarped > 10 * err


def test_occlusion_marks_uncovered_border(gen):
    shift = (2.0, 0.0)  # content moves right: frame i+1's left 2 columns are new
    flow = estimate_flow(shifted_video(gen, shift), "classical")
    vb = flow.valid_backward[:, 0]
    assert vb[..., :2].mean() < 0.1  # uncovered strip of frame i+1 is occluded
    assert vb[..., 4:-4].mean() > 0.95
    vf = flow.valid_forward[:, 0]
    assert vf[..., -2:].mean() < 0.1  # frame i's right strip leaves frame i+1
    assert vf[..., :-4].mean() > 0.95


def test_consistency_mask_flags_inconsistent_pixels():
    fwd = torch.zeros(1, 2, 16, 16)
    bwd = torch.zeros(1, 2, 16, 16)
    bwd[..., 4:8, 4:8] = 3.0  # backward disagrees here
    mask = consistency_mask(fwd, bwd)
    assert mask[0, 0, 4:8, 4:8].sum() == 0
    assert mask.sum() == 256 - 16


def test_resize_flow_scales_vectors():
    flow = torch.ones(2, 2, 8, 12)
    flow[:, 1] = 2.0
    small = resize_flow(flow, (4, 3))
    assert small.shape == (2, 2, 4, 3)
    assert torch.allclose(small[:, 0], torch.full((2, 4, 3), 0.25)) and torch.allclose(small[:, 1], torch.full((2, 4, 3), 1.0))
    big = resize_flow(flow, (16, 24))
    assert torch.allclose(big[:, 0], torch.full((2, 16, 24), 2.0)) and torch.allclose(big[:, 1], torch.full((2, 16, 24), 4.0))


def test_video_flow_resized_keeps_masks_binary(gen):
    flow = estimate_flow(shifted_video(gen, (1.0, 0.0)), "classical").resized((12, 16))
    assert flow.forward.shape == (2, 2, 12, 16) and flow.valid_backward.shape == (2, 1, 12, 16)
    assert set(flow.valid_backward.unique().tolist()) <= {0.0, 1.0}
    assert end_point_error(flow.forward, constant((0.25, 0.0), flow.forward), flow.valid_forward) < 0.1


def test_classical_works_on_latent_channels(gen):
    video = shifted_video(gen, (1.0, 0.5), h=32, w=32)
    latents = torch.cat([video, video.mean(1, keepdim=True)], 1)  # 4 channels like an SD latent
    flow = estimate_flow(latents)
    assert end_point_error(flow.forward, constant((1.0, 0.5), flow.forward), flow.valid_forward) < 0.2


@pytest.mark.parametrize(
    "frames, kwargs, name",
    [
        (torch.rand(1, 3, 16, 16), {}, "frames"),
        (torch.rand(3, 16, 16), {}, "frames"),
        (torch.full((2, 3, 16, 16), float("nan")), {}, "frames"),
        (torch.rand(2, 3, 16, 16), {"method": "sift"}, "method"),
        (torch.rand(2, 3, 16, 16), {"method": "raft"}, "raft_weights"),
        (torch.rand(2, 3, 2, 16), {}, "frames"),
    ],
)
def test_bad_inputs_name_the_input(frames, kwargs, name):
    with pytest.raises(InputError) as err:
        estimate_flow(frames, **kwargs)
    assert err.value.input_name == name


# ----------------------------------------------------------------------------- RAFT


def _torchvision_or_skip():
    """Import torchvision; on CPU-only torch builds its C++ ops fail to register, so define the two
    op schemas its import needs first (the model classes work without them)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        try:
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _torchvision_or_skip.lib = lib  # keep the registration alive
        except RuntimeError:
            pass
        import sys

        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        try:
            import torchvision  # noqa: F401,F811
        except Exception as err:
            pytest.skip(f"torchvision cannot import: {err}")
    except ImportError as err:
        pytest.skip(f"torchvision not installed: {err}")
    from torchvision.models import optical_flow

    return optical_flow


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_raft_loads_user_weights_and_infers(tmp_path, gen, suffix):
    optical_flow = _torchvision_or_skip()
    torch.manual_seed(0)
    model = optical_flow.raft_small(weights=None)
    path = str(tmp_path / f"raft_small{suffix}")
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    video = shifted_video(gen, (1.0, 0.0), frames=2, h=40, w=48)
    flow = estimate_flow(video, raft_weights=path)  # "auto" picks RAFT when weights are given
    assert flow.forward.shape == (1, 2, 40, 48) and torch.isfinite(flow.forward).all()
    # the file holds exactly those weights, and running them directly gives the same forward flow
    from video_enhance_kit.utils.flow import load_raft, raft_flow

    loaded = load_raft(path)
    for (ka, va), (kb, vb) in zip(sorted(loaded.state_dict().items()), sorted(model.state_dict().items())):
        assert ka == kb and torch.equal(va, vb)
    again = raft_flow(loaded, video[:1], video[1:])
    assert torch.allclose(again, flow.forward, atol=1e-3)


def test_raft_rejects_wrong_checkpoint(tmp_path):
    _torchvision_or_skip()
    from safetensors.torch import save_file

    path = str(tmp_path / "not_raft.safetensors")
    save_file({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(InputError) as err:
        estimate_flow(torch.rand(2, 3, 16, 16), "raft", raft_weights=path)
    assert err.value.input_name == "raft_weights" and "raft_large" in str(err.value)
