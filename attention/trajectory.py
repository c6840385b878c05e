"""Self-corrected trajectory attention (ZVRD, Eq. 6-7) and the SLR temporal attention layer.

A *link field* connects every token ``p`` of frame ``a`` to a token of the neighbouring frame ``b``:
an integer displacement ``[P, 2, h, w]`` (dx, dy in tokens) for ``P`` frame pairs. Links from frame
``i`` to ``i + 1`` ("next") and from ``i + 1`` to ``i`` ("prev") are chained into the trajectory of each
token through every frame of the video.

Per token and per step, three candidate links compete (Fig. 2c):

- flow-based: the optical flow resized to the token grid, rounded to whole tokens;
- similarity-based (Eq. 6): the token of ``b`` with the highest cosine similarity of the layer's key
  features, searched in a ``window x window`` neighbourhood centred on the flow-based target
  (the paper does not say where the window sits; centring on the flow makes it a local correction);
- historically-best: the link chosen at the previous step (for the same layer and stream).

The winner has the lowest mean absolute warp error of ``x0_hat`` over the token's patch (the
``c x c`` cell of ``x0_hat`` under the token; for SD latents at the largest attention resolution one
latent pixel = an 8 x 8 image patch, the paper's patch size). Ties keep the earlier candidate
(flow, similarity, history).

Eq. 7: each token's query ``Q_hat[p]`` (the cross-neighbour attention output) attends to the keys and
values at its trajectory positions in all *other* frames. A trajectory stops where it leaves the frame;
a token with no valid trajectory position keeps its query ``Q_hat[p]`` unchanged.

Hot path: everything that depends only on the run - the flow resized and rounded to each token grid, the
window offsets - is computed once (per run, per grid, on the device of the features) and reused by every
step and layer; the trajectory map of a call is built with tensor ops (one gather per frame distance, all
query frames at once); the candidates' win counts are tallied on the device and read only when
``stats.counts`` is read. No call reads a device value on the host.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..utils.checks import InputError, Range
from ..utils.video import both_directions, merge_streams, split_streams
from .cross_frame import (
    Attention,
    cross_neighbour_attention,
    sdpa_attention,
    self_attention,
)
from .links import (
    flow_links,
    link_targets,
    patch_warp_error,
    select_links,
    similarity_links,
)

CANDIDATES = ("flow", "similarity", "history")
WINDOW = Range(1, 15, integer=True)  # search_window: odd side of the similarity search square (tokens)
RADIUS = Range(0, 1024, integer=True)  # trajectory_radius: frames on each side (0 = all)


def check_window(window: int) -> int:
    """Fail unless ``window`` is an odd whole number in :data:`WINDOW`."""
    WINDOW.check(window, "search_window")
    if window % 2 == 0:
        raise InputError("search_window", f"must be odd, got {window}", "use 1, 3, 5, 7, ...")
    return window


# ----------------------------------------------------------------------------- trajectories and Eq. 7


def chain(links: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Follow one link per row: ``links [R, N]`` at positions ``pos [R, N]`` (-1 stays -1)."""
    return torch.where(pos >= 0, links.gather(1, pos.clamp_min(0)), pos)


def trajectory_map(next_idx: torch.Tensor, prev_idx: torch.Tensor, reach: int | None = None) -> torch.Tensor:
    """Where every token of every frame is in the frames around it: ``[F, 2R + 1, N]`` long, -1 off the trajectory.

    ``map[i, R + d]`` holds the positions in frame ``i + d`` of frame ``i``'s tokens (``|d| <= R``, ``R = reach``,
    default ``F - 1``: every frame); rows whose ``i + d`` is outside the video are -1. Built with one
    gather per distance ``d`` for all frames at once. next_idx / prev_idx: ``[F-1, N]`` (see :func:`trajectory_of`).
    """
    frames, n = next_idx.shape[0] + 1, next_idx.shape[1]
    reach = frames - 1 if reach is None else min(reach, frames - 1)
    band = torch.full((frames, 2 * reach + 1, n), -1, dtype=torch.long, device=next_idx.device)
    band[:, reach] = torch.arange(n, device=next_idx.device)
    for d in range(1, reach + 1):
        band[: frames - d, reach + d] = chain(next_idx[d - 1 :], band[: frames - d, reach + d - 1])
        band[d:, reach - d] = chain(prev_idx[: frames - d], band[d:, reach - d + 1])
    return band


def trajectory_of(frame: int, next_idx: torch.Tensor, prev_idx: torch.Tensor) -> torch.Tensor:
    """Positions of frame ``frame``'s tokens in every frame: ``[F, N]`` long (-1 after leaving the frame).

    next_idx: ``[F-1, N]`` token of frame ``i + 1`` linked to each token of frame ``i``;
    prev_idx: ``[F-1, N]`` token of frame ``i`` linked to each token of frame ``i + 1``.
    """
    frames = next_idx.shape[0] + 1
    return trajectory_map(next_idx, prev_idx)[frame, frames - 1 - frame : 2 * frames - 1 - frame]


def einsum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, valid: torch.Tensor) -> torch.Tensor:
    """One query per token against its trajectory keys: ``q [c, H * D]``, ``k, v [T, c, H * D]``, ``valid [T, c]`` -> ``[c, H * D]``.

    The softmax is written out in float32 (SDPA is slow for a batch of length-1 queries); a token with no
    valid key gets zeros (the caller keeps its query there).
    """
    qq = rearrange(q, "c (h d) -> c h d", h=heads)
    kk = rearrange(k, "t c (h d) -> t c h d", h=heads)
    vv = rearrange(v, "t c (h d) -> t c h d", h=heads)
    any_valid = valid.any(0)  # [c]
    scores = torch.einsum("chd,tchd->tch", qq.float(), kk.float()) * (qq.shape[-1] ** -0.5)
    scores = scores.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    weights = torch.softmax(scores.masked_fill(~any_valid.view(1, -1, 1), 0.0), 0)
    return rearrange(torch.einsum("tch,tchd->chd", weights, vv.float()), "c h d -> c (h d)")


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, valid: torch.Tensor, attention: Attention) -> torch.Tensor:
    """:func:`einsum_attention` through an attention function: ``c`` batches of one query, ``T`` keys, additive mask.

    A token with no valid key gets an all-zero mask row (finite output; the caller keeps its query there).
    """
    keep = valid | ~valid.any(0, keepdim=True)  # [T, c]
    mask = torch.zeros(keep.shape[::-1], dtype=q.dtype, device=q.device).masked_fill(~keep.t(), float("-inf"))
    out = attention(q.unsqueeze(1), k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous(), heads, mask=mask.view(-1, 1, 1, keep.shape[0]))
    return out[:, 0]


def trajectory_attention(
    q_hat: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    next_idx: torch.Tensor,
    prev_idx: torch.Tensor,
    budget: int = 1 << 24,
    radius: int = 0,
    attention: Attention | None = None,
) -> torch.Tensor:
    """Eq. 7 for one stream: ``q_hat, k, v [F, N, H * D]`` -> ``[F, N, H * D]``.

    radius: how many frames on each side the trajectory reaches (0 = all frames, the paper); a
    radius makes the cost linear in frames instead of quadratic.

    Token ``p`` of frame ``i`` attends to ``K, V`` at its trajectory positions in the other
    frames (``Traj - p``): one query against at most ``F - 1`` keys. attention: None (default) writes
    the softmax out (:func:`einsum_attention`); a function (ComfyUI's ``optimized_attention``) gets
    ``[c, 1, H * D]`` queries, ``[c, T, H * D]`` keys and an additive ``[c, 1, 1, T]`` mask. Memory per
    call is ``O(F * N * H * D)`` (one query frame at a time, tokens in chunks of at most ``budget``
    gathered elements) plus the trajectory map (:func:`trajectory_map`).
    """
    frames, n, width = k.shape
    if frames == 1:
        return q_hat.clone()
    reach = frames - 1 if radius <= 0 else min(radius, frames - 1)
    band = trajectory_map(next_idx, prev_idx, reach)  # [F, 2R+1, N]
    offsets = torch.arange(-reach, reach + 1, device=k.device)
    out = torch.empty_like(q_hat)
    chunk = max(1, min(n, budget // max(1, (frames - 1) * width)))  # tokens per gather
    k_flat, v_flat = k.reshape(frames * n, width), v.reshape(frames * n, width)
    for i in range(frames):
        lo, hi = max(0, i - reach), min(frames, i + reach + 1)
        cols = torch.cat([offsets[lo - i + reach : reach], offsets[reach + 1 : hi - i + reach]]) + reach
        others = band[i, cols]  # [T, N], frames lo..i-1, i+1..hi-1 in order
        frame_ids = (cols - reach + i).view(-1, 1)
        for s in range(0, n, chunk):
            idx = others[:, s : s + chunk]  # [T, c]
            valid = idx >= 0
            flat = frame_ids * n + idx.clamp_min(0)
            q = q_hat[i, s : s + chunk]
            if attention is None:
                o = einsum_attention(q, k_flat[flat], v_flat[flat], heads, valid)
            else:
                o = masked_attention(q, k_flat[flat], v_flat[flat], heads, valid, attention)
            out[i, s : s + chunk] = torch.where(valid.any(0).unsqueeze(-1), o.to(out.dtype), q)
    return out


# ----------------------------------------------------------------------------- the self-correction


class CorrectionStats:
    """How often each candidate won at the corrections (token counts), tallied on the device, read on demand."""

    def __init__(self):
        self._tally: torch.Tensor | None = None  # [len(CANDIDATES)] long, on the device of the last choice

    def add(self, choice: torch.Tensor) -> None:
        """Count the winners ``choice`` (candidate index per token) without reading them on the host."""
        ids = torch.arange(len(CANDIDATES), device=choice.device).view(-1, 1)
        counts = (choice.flatten().unsqueeze(0) == ids).sum(1)
        self._tally = counts if self._tally is None else self._tally.to(counts.device) + counts

    @property
    def counts(self) -> dict:
        """``{candidate: tokens won}`` (one host read)."""
        values = [0] * len(CANDIDATES) if self._tally is None else self._tally.tolist()
        return dict(zip(CANDIDATES, values))

    @counts.setter
    def counts(self, values: dict) -> None:
        self._tally = torch.tensor([int(values.get(c, 0)) for c in CANDIDATES])


class SelfCorrectedTrajectories:
    """Chooses the links of every layer and stream per step, remembering the best ones (history)."""

    def __init__(self, window: int = 5):
        self.window = check_window(window)
        self.history: dict = {}
        self.stats = CorrectionStats()

    def reset(self) -> None:
        """Forget the historically-best links (a new sampling run); ``stats`` keep counting."""
        self.history.clear()

    def links(self, key, feats: torch.Tensor, size: tuple[int, int], flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, x0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(next_idx, prev_idx)`` ``[F-1, N]`` for one stream from pixel flows ``[F-1, 2, H, W]`` (resized here).

        key: identifies layer and stream for the history. feats: ``[F, N, D]`` key features.
        x0: ``[F, C, H0, W0]`` the current clean estimate (None: flow-based links only).
        """
        flow_disp = flow_links(torch.cat([flow_fwd, flow_bwd]).to(feats.device), size)
        return self.corrected_links(key, feats, size, flow_disp, x0)

    def corrected_links(self, key, feats: torch.Tensor, size: tuple[int, int], flow_disp: torch.Tensor, x0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`links` from the flow-based links ``flow_disp [2(F-1), 2, h, w]`` (forward pairs, then backward)."""
        frames = feats.shape[0]
        if x0 is None:
            best = flow_disp
        else:
            feats_a, feats_b = both_directions(feats)
            sim_disp = similarity_links(feats_a, feats_b, size, flow_disp, self.window)
            x0_a, x0_b = both_directions(x0.to(feats.device))
            candidates = [flow_disp, sim_disp]
            hist = self.history.get(key)
            if hist is not None and hist.shape == flow_disp.shape:
                candidates.append(hist)
            errors = [patch_warp_error(x0_a, x0_b, c) for c in candidates]
            best, choice = select_links(candidates, errors)
            self.stats.add(choice)
        self.history[key] = best
        idx = link_targets(best)
        return idx[: frames - 1], idx[frames - 1 :]


# ----------------------------------------------------------------------------- the SLR layer


class SLRTemporalAttention:
    """Short-long-range temporal attention (Fig. 2): cross-neighbour attention, then trajectory attention.

    Call with the self-attention projections ``q, k, v [S * F, N, H * D]`` of an image UNet layer.
    Trajectory attention needs a flow (``set_flow``) or an ``x0_hat`` to estimate one from
    (``set_x0``), both in frames' layout ``[F, ...]``; the node sets them between steps.
    attention: the attention function of both parts (None: torch SDPA for cross-neighbour attention and
    the written-out softmax for trajectory attention); a call's ``attention`` argument overrides it.

    Per-run cache: the flow-based links at each token grid (:meth:`grid_links`), dropped by :meth:`reset`
    (a new run), :meth:`set_flow` and, for a flow estimated from x0_hat, :meth:`set_x0` (a new step).
    """

    def __init__(self, cross_neighbour: bool = True, trajectory: bool = True, window: int = 5, boundary: str = "clamp", flow_estimator=None, radius: int = 0, attention: Attention | None = None):
        self.radius = RADIUS.check(radius, "trajectory_radius")
        self.cross_neighbour = cross_neighbour
        self.trajectory = trajectory
        self.boundary = boundary
        self.attention = attention
        self.corrector = SelfCorrectedTrajectories(window)
        self.flow_estimator = flow_estimator  # frames [F, C, H, W] -> (forward, backward) pixel flows
        self.fixed_flow: tuple[torch.Tensor, torch.Tensor] | None = None
        self.x0: torch.Tensor | None = None
        self._x0_flow: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grid_links: dict = {}

    def reset(self) -> None:
        """Start of a sampling run: forget x0_hat, its flow, the grid cache and the trajectory history."""
        self.x0 = None
        self._x0_flow = None
        self._grid_links.clear()
        self.corrector.reset()

    def set_flow(self, forward: torch.Tensor | None, backward: torch.Tensor | None) -> None:
        """A flow of the input video ``[F-1, 2, H, W]`` (pixels, any resolution) used instead of estimating one."""
        self.fixed_flow = None if forward is None else (forward, backward)
        self._grid_links.clear()

    def set_x0(self, x0: torch.Tensor) -> None:
        """The clean estimate ``x0_hat [F, C, H, W]`` of the step just taken (used at the next step)."""
        self.x0 = x0.detach()
        self._x0_flow = None
        if self.fixed_flow is None:
            self._grid_links.clear()

    def flow(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Forward/backward flows for the trajectories: the fixed flow, else estimated from x0_hat (cached per step)."""
        if self.fixed_flow is not None:
            return self.fixed_flow
        if self.x0 is None or self.flow_estimator is None or self.x0.shape[0] < 2:
            return None
        if self._x0_flow is None:
            self._x0_flow = self.flow_estimator(self.x0.float())
        return self._x0_flow

    def grid_links(self, size: tuple[int, int], device) -> torch.Tensor:
        """Flow-based links ``[2(F-1), 2, h, w]`` (forward pairs, then backward) at a token grid, on ``device`` (cached)."""
        key = (tuple(size), torch.device(device))
        if key not in self._grid_links:
            fwd, bwd = self.flow()
            self._grid_links[key] = flow_links(torch.cat([fwd, bwd]).to(device), size)
        return self._grid_links[key]

    def __call__(self, q, k, v, heads: int, streams: int, size: tuple[int, int], layer=None, stream_ids=None, trajectory_active: bool = True, attention: Attention | None = None) -> torch.Tensor:
        """SLR attention on ``q, k, v [S * F, N, H * D]``; ``size = (h, w)`` token grid (``h * w = N``)."""
        if size[0] * size[1] != q.shape[1]:
            raise InputError("size", f"token grid {size} does not hold {q.shape[1]} tokens", "pass the layer's (height, width)")
        attention = attention or self.attention
        if self.cross_neighbour:
            out = cross_neighbour_attention(q, k, v, heads, streams, self.boundary, attention=attention or sdpa_attention)
        else:
            out = self_attention(q, k, v, heads, attention or sdpa_attention)
        frames = q.shape[0] // streams
        if not (self.trajectory and trajectory_active) or frames < 2 or self.flow() is None:
            return out
        return self.trajectory_streams(out, k, v, heads, streams, size, layer, stream_ids, attention)

    def trajectory_streams(self, out, k, v, heads: int, streams: int, size, layer, stream_ids, attention) -> torch.Tensor:
        """Trajectory attention (Eq. 6-7) of every stream on the cross-neighbour output ``out [S * F, N, H * D]``."""
        frames = out.shape[0] // streams
        fwd, _ = self.flow()
        if fwd.shape[0] != frames - 1:
            raise InputError("flow", f"describes {fwd.shape[0] + 1} frames but the latent batch has {frames}", "estimate the flow from the same video you sample")
        x0 = self.x0 if self.x0 is not None and self.x0.shape[0] == frames else None
        flow_disp = self.grid_links(size, k.device)
        stream_ids = list(range(streams)) if stream_ids is None else list(stream_ids)
        outs, ks, vs = (split_streams(t, streams) for t in (out, k, v))
        result = torch.empty_like(outs)
        for s in range(streams):
            next_idx, prev_idx = self.corrector.corrected_links((layer, stream_ids[s]), ks[s], size, flow_disp, x0)
            result[s] = trajectory_attention(outs[s], ks[s], vs[s], heads, next_idx, prev_idx, radius=self.radius, attention=attention)
        return merge_streams(result)
