"""Self-corrected trajectory attention (attention/trajectory.py, ZVRD Eq. 6-7) and the SLR layer."""

import pytest
import torch

from video_enhance_kit.attention.cross_frame import cross_neighbour_attention
from video_enhance_kit.attention.trajectory import (
    SelfCorrectedTrajectories,
    SLRTemporalAttention,
    flow_links,
    link_targets,
    patch_warp_error,
    similarity_links,
    trajectory_attention,
    trajectory_of,
)
from video_enhance_kit.utils.checks import InputError

H, W, D, HEADS = 6, 8, 8, 2


def translated(gen, frames, shift, channels=D, h=H, w=W, pad=8):
    """Frames ``[F, h*w, C]`` of a random token grid moving by integer ``shift=(dx, dy)`` tokens per frame."""
    big = torch.randn(channels, h + 2 * pad, w + 2 * pad, generator=gen)
    out = []
    for j in range(frames):
        y0, x0 = pad - shift[1] * j, pad - shift[0] * j
        out.append(big[:, y0 : y0 + h, x0 : x0 + w].reshape(channels, h * w).T)
    return torch.stack(out)


def constant_flow(pairs, shift, h=H, w=W):
    return torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1).expand(pairs, 2, h, w).clone()


def test_trajectory_gather_follows_known_translation():
    frames, shift = 4, (1, 0)
    idx = link_targets(flow_links(constant_flow(frames - 1, shift), (H, W)))
    back = link_targets(flow_links(constant_flow(frames - 1, (-1, 0)), (H, W)))
    pos = trajectory_of(1, idx, back)  # tokens of frame 1
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for j in range(frames):
        tx = xs + (j - 1) * shift[0]
        expect = torch.where((tx >= 0) & (tx < W), ys * W + tx, torch.full_like(tx, -1)).flatten()
        assert torch.equal(pos[j], expect)


def test_trajectory_attention_returns_the_translated_values(gen):
    frames, shift = 4, (1, 0)
    v = translated(gen, frames, shift)
    k = translated(gen, frames, shift)
    q = torch.randn(frames, H * W, D, generator=gen)
    nxt = link_targets(flow_links(constant_flow(frames - 1, shift), (H, W)))
    prv = link_targets(flow_links(constant_flow(frames - 1, (-1, 0)), (H, W)))
    out = trajectory_attention(q, k, v, HEADS, nxt, prv)
    # every key on a token's trajectory carries that token's value (the content moved with the flow),
    # so the attention returns it whatever the weights; a token seen in no other frame keeps its query
    seen = torch.stack([(torch.cat([trajectory_of(i, nxt, prv)[:i], trajectory_of(i, nxt, prv)[i + 1 :]]) >= 0).any(0) for i in range(frames)])
    assert seen.float().mean() > 0.8
    assert torch.allclose(out[seen], v[seen], atol=1e-5)
    assert torch.equal(out[~seen], q[~seen])
    # and it differs from attending at the same positions (no motion compensation)
    still = link_targets(torch.zeros(frames - 1, 2, H, W))
    assert not torch.allclose(trajectory_attention(q, k, v, HEADS, still, still), v, atol=1e-2)


def test_token_without_trajectory_keeps_its_query(gen):
    frames = 2
    q, k, v = (torch.randn(frames, H * W, D, generator=gen) for _ in range(3))
    nxt = link_targets(constant_flow(1, (W, 0)))  # everything leaves the frame
    out = trajectory_attention(q, k, v, HEADS, nxt, nxt)
    assert torch.equal(out, q)
    assert torch.equal(trajectory_attention(q[:1], k[:1], v[:1], HEADS, nxt[:0], nxt[:0]), q[:1])


def test_similarity_links_recover_motion_within_window(gen):
    feats = translated(gen, 2, (1, -1))
    disp = similarity_links(feats[:1], feats[1:], (H, W), torch.zeros(1, 2, H, W), window=3)
    interior = disp[0, :, 1:-1, :-1]  # tokens whose match lies inside frame 1
    assert (interior[0] == 1).all() and (interior[1] == -1).all()


def test_patch_warp_error_is_zero_for_the_true_link(gen):
    x0 = translated(gen, 2, (1, 0), channels=3, h=H * 2, w=W * 2)  # 2x2 patch per token
    x0 = x0.permute(0, 2, 1).reshape(2, 3, H * 2, W * 2)
    true = constant_flow(1, (1, 0))  # 1 token = 2 px of x0
    x0b = torch.roll(x0[:1], shifts=2, dims=-1)  # x0 of frame b: frame a moved 2 px right
    err_true = patch_warp_error(x0[:1], x0b, true)
    err_zero = patch_warp_error(x0[:1], x0b, torch.zeros_like(true))
    assert torch.isinf(err_true[..., -1]).all()  # target outside the frame
    assert err_true[..., :-1].max() < 1e-5 and err_zero.mean() > 0.1


def test_self_correction_picks_similarity_when_flow_is_wrong_then_remembers_it(gen):
    frames, shift = 3, (1, 0)
    feats = translated(gen, frames, shift)
    x0 = translated(gen, frames, shift, channels=4).permute(0, 2, 1).reshape(frames, 4, H, W)
    zero = torch.zeros(frames - 1, 2, H, W)  # a wrong (static) flow
    corr = SelfCorrectedTrajectories(window=3)
    nxt, prv = corr.links("layer", feats, (H, W), zero, zero, x0)
    truth = link_targets(constant_flow(frames - 1, shift))
    inside = truth >= 0
    assert (nxt[inside] == truth[inside]).float().mean() > 0.95
    assert corr.stats.counts["similarity"] > corr.stats.counts["flow"]
    # next step: with uninformative features, the historically-best links win over the wrong flow
    corr.stats.counts = {c: 0 for c in corr.stats.counts}
    nxt2, _ = corr.links("layer", torch.randn(frames, H * W, D, generator=gen), (H, W), zero, zero, x0)
    assert (nxt2[inside] == truth[inside]).float().mean() > 0.95
    assert corr.stats.counts["history"] > 0


def test_self_correction_keeps_a_correct_flow(gen):
    frames, shift = 3, (1, 0)
    x0 = translated(gen, frames, shift, channels=4).permute(0, 2, 1).reshape(frames, 4, H, W)
    corr = SelfCorrectedTrajectories(window=3)
    nxt, prv = corr.links("l", torch.randn(frames, H * W, D, generator=gen), (H, W), constant_flow(2, shift), constant_flow(2, (-1, 0)), x0)
    truth = link_targets(constant_flow(frames - 1, shift))
    assert torch.equal(nxt[truth >= 0], truth[truth >= 0])


def test_slr_layer_is_cross_neighbour_when_trajectory_inactive(gen):
    q, k, v = (torch.randn(8, H * W, D, generator=gen) for _ in range(3))
    slr = SLRTemporalAttention(flow_estimator=lambda x: (torch.zeros(3, 2, H, W), torch.zeros(3, 2, H, W)))
    slr.set_x0(torch.randn(4, 4, H, W, generator=gen))
    base = cross_neighbour_attention(q, k, v, HEADS, 2)
    assert torch.equal(slr(q, k, v, HEADS, 2, (H, W), trajectory_active=False), base)
    assert not torch.allclose(slr(q, k, v, HEADS, 2, (H, W), trajectory_active=True), base)


def test_slr_layer_does_not_depend_on_stream_order(gen):
    frames = 3
    q, k, v = (torch.randn(2 * frames, H * W, D, generator=gen) for _ in range(3))
    x0 = torch.randn(frames, 4, H, W, generator=gen)
    flow = (constant_flow(2, (1, 0)), constant_flow(2, (-1, 0)))

    def run(order, ids):
        slr = SLRTemporalAttention(window=3)
        slr.set_flow(*flow)
        slr.set_x0(x0)
        return slr(q[order], k[order], v[order], HEADS, 2, (H, W), layer="l", stream_ids=ids)

    a = run(torch.arange(2 * frames), [0, 1])
    swap = torch.cat([torch.arange(frames, 2 * frames), torch.arange(frames)])
    b = run(swap, [1, 0])
    assert torch.allclose(b, a[swap], atol=1e-6)


def test_slr_errors_name_inputs(gen):
    q = torch.randn(4, H * W, D, generator=gen)
    slr = SLRTemporalAttention()
    with pytest.raises(InputError):
        slr(q, q, q, HEADS, 1, (H, W + 1))
    slr.set_flow(constant_flow(5, (0, 0)), constant_flow(5, (0, 0)))
    with pytest.raises(InputError) as err:
        slr(q, q, q, HEADS, 1, (H, W))
    assert err.value.input_name == "flow"
    with pytest.raises(InputError):
        SelfCorrectedTrajectories(window=4)


def test_trajectory_radius_limits_the_frames_attended(gen):
    frames, shift = 5, (1, 0)
    v = translated(gen, frames, shift)
    k = translated(gen, frames, shift)
    q = torch.randn(frames, H * W, D, generator=gen)
    nxt = link_targets(flow_links(constant_flow(frames - 1, shift), (H, W)))
    prv = link_targets(flow_links(constant_flow(frames - 1, (-1, 0)), (H, W)))
    full = trajectory_attention(q, k, v, HEADS, nxt, prv)
    near = trajectory_attention(q, k, v, HEADS, nxt, prv, radius=1)
    assert torch.allclose(near[2], full[2], atol=1e-5)  # translated content: same answer from the neighbours
    far = v.clone()
    far[4] += 10.0  # change frame 4: frame 0 with radius 1 (frames 0-1) must not see it
    assert torch.equal(trajectory_attention(q, k, far, HEADS, nxt, prv, radius=1)[0], near[0])
    assert not torch.allclose(trajectory_attention(q, k, far, HEADS, nxt, prv)[0], full[0])
