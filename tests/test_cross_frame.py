"""Cross-neighbour-frame attention (attention/cross_frame.py, ZVRD Eq. 5)."""

import pytest
import torch

from video_enhance_kit.attention.cross_frame import cross_neighbour_attention, neighbour_frames, self_attention
from video_enhance_kit.utils.checks import InputError

HEADS = 2


def qkv(gen, frames, n=12, width=16, streams=1):
    return [torch.randn(streams * frames, n, width, generator=gen) for _ in range(3)]


def reference(q, k, v, i, prev, nxt):
    """Eq. 5 for frame i by hand: softmax(Q_i [K_prev || K_next]^T / sqrt(d)) [V_prev || V_next], per head."""
    kk = torch.cat([k[prev], k[nxt]])
    vv = torch.cat([v[prev], v[nxt]])
    outs = []
    for h in range(HEADS):
        d = q.shape[-1] // HEADS
        sl = slice(h * d, (h + 1) * d)
        att = torch.softmax(q[i][:, sl] @ kk[:, sl].T / d**0.5, -1)
        outs.append(att @ vv[:, sl])
    return torch.cat(outs, -1)


def test_identical_frames_equal_self_attention(gen):
    q, k, v = (t[:1].expand(5, -1, -1).contiguous() for t in qkv(gen, 1))
    for boundary in ("clamp", "reflect"):
        out = cross_neighbour_attention(q, k, v, HEADS, boundary=boundary)
        assert torch.allclose(out, self_attention(q, k, v, HEADS), atol=1e-5)


def test_interior_frames_follow_eq5(gen):
    q, k, v = qkv(gen, 5)
    out = cross_neighbour_attention(q, k, v, HEADS, chunk=2)
    for i in (1, 2, 3):
        assert torch.allclose(out[i], reference(q, k, v, i, i - 1, i + 1), atol=1e-5)


def test_boundary_rules(gen):
    q, k, v = qkv(gen, 4)
    clamp = cross_neighbour_attention(q, k, v, HEADS, boundary="clamp")
    assert torch.allclose(clamp[0], reference(q, k, v, 0, 0, 1), atol=1e-5)  # first frame: itself + frame 1
    assert torch.allclose(clamp[3], reference(q, k, v, 3, 2, 3), atol=1e-5)  # last frame: frame 2 + itself
    reflect = cross_neighbour_attention(q, k, v, HEADS, boundary="reflect")
    assert torch.allclose(reflect[0], reference(q, k, v, 0, 1, 1), atol=1e-5)  # only frame 1 (mirrored)
    assert torch.allclose(reflect[3], reference(q, k, v, 3, 2, 2), atol=1e-5)
    prev, nxt = neighbour_frames(4, "clamp")
    assert prev.tolist() == [0, 0, 1, 2] and nxt.tolist() == [1, 2, 3, 3]


def test_single_frame_is_self_attention(gen):
    q, k, v = qkv(gen, 1)
    for boundary in ("clamp", "reflect"):
        assert torch.allclose(cross_neighbour_attention(q, k, v, HEADS, boundary=boundary), self_attention(q, k, v, HEADS), atol=1e-5)


def test_streams_are_separate_and_order_free(gen):
    frames = 3
    q, k, v = qkv(gen, frames, streams=2)
    out = cross_neighbour_attention(q, k, v, HEADS, streams=2)
    # each stream alone gives the same result: cond frames never see uncond frames
    for s in range(2):
        sl = slice(s * frames, (s + 1) * frames)
        assert torch.allclose(out[sl], cross_neighbour_attention(q[sl], k[sl], v[sl], HEADS), atol=1e-6)
    # swapping the order of cond and uncond in the batch swaps the outputs and nothing else
    swap = torch.cat([torch.arange(frames, 2 * frames), torch.arange(frames)])
    swapped = cross_neighbour_attention(q[swap], k[swap], v[swap], HEADS, streams=2)
    assert torch.allclose(swapped, out[swap], atol=1e-6)


def test_batch_not_multiple_of_streams_names_the_input(gen):
    q, k, v = qkv(gen, 5)
    with pytest.raises(InputError) as err:
        cross_neighbour_attention(q, k, v, HEADS, streams=2)
    assert err.value.input_name == "latent batch"
    with pytest.raises(InputError):
        cross_neighbour_attention(q, k, v, HEADS, boundary="wrap")
