"""SLR attention routes every attention product through the function it is handed (ComfyUI's optimized_attention
in the node layer; torch SDPA by default), in ComfyUI's convention ``(q [B, N, H*D], k, v, heads, mask=None)``."""

import math

import pytest
import torch
import video_enhance_kit.attention.cross_frame as cross_frame
import video_enhance_kit.attention.trajectory as trajectory
from video_enhance_kit.attention.cross_frame import cross_neighbour_attention, sdpa_attention
from video_enhance_kit.attention.trajectory import SLRTemporalAttention

FRAMES, H, W, WIDTH, HEADS = 5, 4, 6, 16, 4


class Recorder:
    """A stand-in for optimized_attention: records each call's shapes and computes softmax attention by hand."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, k, v, heads, mask=None, attn_precision=None, **kwargs):
        self.calls.append((tuple(q.shape), tuple(k.shape), None if mask is None else tuple(mask.shape), attn_precision))
        b, n, width = q.shape
        split = [t.view(b, -1, heads, width // heads).transpose(1, 2) for t in (q, k, v)]  # ComfyUI's reshape
        scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(width // heads)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(-1) @ split[2]
        return out.transpose(1, 2).reshape(b, n, width)


@pytest.fixture
def no_direct_attention(monkeypatch):
    """Fail if SLR computes attention without the handed function (torch SDPA or the written-out softmax)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("attention computed without the handed function")

    monkeypatch.setattr(cross_frame.F, "scaled_dot_product_attention", forbidden)
    monkeypatch.setattr(trajectory, "einsum_attention", forbidden)


def inputs(seed=0, streams=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(streams * FRAMES, H * W, WIDTH, generator=g) for _ in range(3)]


def test_every_attention_call_goes_through_the_handed_function(no_direct_attention):
    rec = Recorder()
    g = torch.Generator().manual_seed(1)
    slr = SLRTemporalAttention(window=3, attention=rec)
    fwd = torch.randn(FRAMES - 1, 2, H, W, generator=g)
    slr.set_flow(fwd, -fwd)
    slr.set_x0(torch.randn(FRAMES, 4, H, W, generator=g))
    q, k, v = inputs()
    out = slr(q, k, v, HEADS, 2, (H, W), layer="l", stream_ids=[0, 1])
    assert out.shape == q.shape and torch.isfinite(out).all()
    cross = [c for c in rec.calls if c[2] is None]
    traj = [c for c in rec.calls if c[2] is not None]
    assert len(cross) == 2 * math.ceil(FRAMES / 4)  # per stream, chunks of 4 query frames
    assert all(c[1][1] == 2 * H * W for c in cross)  # keys of the two neighbours
    assert len(traj) == 2 * FRAMES  # per stream and query frame (one token chunk)
    assert all(c[0] == (H * W, 1, WIDTH) and c[1] == (H * W, FRAMES - 1, WIDTH) and c[2] == (H * W, 1, 1, FRAMES - 1) for c in traj)


def test_self_attention_path_uses_the_handed_function(no_direct_attention):
    rec = Recorder()
    slr = SLRTemporalAttention(cross_neighbour=False, trajectory=False)
    q, k, v = inputs()
    slr(q, k, v, HEADS, 2, (H, W), attention=rec)  # a call's function overrides the layer's default
    assert [c[:2] for c in rec.calls] == [(tuple(q.shape), tuple(k.shape))]


def test_handed_function_gives_the_default_results():
    """The conventions match: through a hand-written attention the outputs equal the defaults (SDPA, written-out softmax)."""
    q, k, v = inputs(2)
    assert torch.allclose(cross_neighbour_attention(q, k, v, HEADS, 2, attention=Recorder()), cross_neighbour_attention(q, k, v, HEADS, 2), atol=1e-5)
    g = torch.Generator().manual_seed(3)
    fwd = torch.randn(FRAMES - 1, 2, H, W, generator=g) * 2  # links leaving the frame: masked keys, tokens with none
    x0 = torch.randn(FRAMES, 4, H, W, generator=g)
    outs = []
    for attention in (None, Recorder()):
        slr = SLRTemporalAttention(window=3, attention=attention, radius=2)
        slr.set_flow(fwd, -fwd)
        slr.set_x0(x0)
        outs.append(slr(q, k, v, HEADS, 2, (H, W), layer="l", stream_ids=[0, 1]))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_default_is_torch_sdpa():
    q, k, v = inputs(4, streams=1)
    ref = torch.nn.functional.scaled_dot_product_attention(*(t.view(FRAMES, -1, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v)))
    assert torch.equal(sdpa_attention(q, k, v, HEADS), ref.transpose(1, 2).reshape(FRAMES, -1, WIDTH))
