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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange

from ..utils.checks import InputError, check_range
from ..utils.flow import resize_flow
from ..utils.warp import warp
from .cross_frame import cross_neighbour_attention, self_attention

CANDIDATES = ("flow", "similarity", "history")


# ----------------------------------------------------------------------------- links


def flow_links(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow-based links: ``flow [P, 2, H, W]`` (pixels) resized to ``size`` tokens and rounded -> ``[P, 2, h, w]``."""
    return resize_flow(flow.float(), size).round()


def link_targets(disp: torch.Tensor) -> torch.Tensor:
    """Flat token index in frame ``b`` of each link ``disp [P, 2, h, w]`` -> ``[P, h * w]`` long, -1 outside the frame."""
    p, _, h, w = disp.shape
    ys = torch.arange(h, device=disp.device).view(1, h, 1)
    xs = torch.arange(w, device=disp.device).view(1, 1, w)
    tx = xs + disp[:, 0].long()
    ty = ys + disp[:, 1].long()
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    return torch.where(inside, ty * w + tx, torch.full_like(tx, -1)).reshape(p, h * w)


def similarity_links(feat_a: torch.Tensor, feat_b: torch.Tensor, size: tuple[int, int], centre: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Similarity-based links (Eq. 6): per token of ``a``, the most cosine-similar token of ``b`` in a window.

    feat_a, feat_b: ``[P, N, D]`` with ``N = h * w``. centre: ``[P, 2, h, w]`` window centres (token
    displacements). window: odd side of the search square. Returns displacements ``[P, 2, h, w]``.
    """
    h, w = size
    fa = F.normalize(feat_a.float(), dim=-1)
    fb = F.normalize(feat_b.float(), dim=-1)
    r = window // 2
    p, n, d = fa.shape
    fa_flat, fb_flat = fa.reshape(p * n, d), fb.reshape(p * n, d)
    base = (torch.arange(p, device=fa.device) * n).view(p, 1)
    best = torch.full(fa.shape[:2], -2.0, device=fa.device)
    best_disp = centre.clone()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            cand = centre + torch.tensor([dx, dy], dtype=centre.dtype, device=centre.device).view(1, 2, 1, 1)
            idx = link_targets(cand)
            ok = idx >= 0
            gathered = fb_flat.index_select(0, (idx.clamp_min(0) + base).flatten())
            sim = torch.where(ok, torch.linalg.vecdot(fa_flat, gathered).view(p, n), torch.full_like(best, -3.0))
            better = sim > best
            best = torch.where(better, sim, best)
            best_disp = torch.where(better.view(-1, 1, h, w), cand, best_disp)
    return best_disp


def patch_warp_error(x0_a: torch.Tensor, x0_b: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """Mean ``|x0_a - x0_b(p + disp)|`` over each token's patch of ``x0_hat`` -> ``[P, h, w]`` (inf if out of frame).

    x0_a, x0_b: ``[P, C, H, W]``; disp: ``[P, 2, h, w]`` in tokens. The patch of a token is the
    ``c x c`` cell it covers, ``c = round(H / h)`` (``x0`` is resized to ``c h x c w`` when needed).
    """
    p, _, h, w = disp.shape
    c = max(1, round(x0_a.shape[-2] / h))
    if tuple(x0_a.shape[-2:]) != (c * h, c * w):
        x0_a = F.interpolate(x0_a.float(), size=(c * h, c * w), mode="area")
        x0_b = F.interpolate(x0_b.float(), size=(c * h, c * w), mode="area")
    dense = (disp * c).repeat_interleave(c, -2).repeat_interleave(c, -1)
    err = (warp(x0_b.float(), dense) - x0_a.float()).abs().mean(1, keepdim=True)
    err = F.avg_pool2d(err, c)[:, 0]
    inside = link_targets(disp).view(p, h, w) >= 0
    return torch.where(inside, err, torch.full_like(err, float("inf")))


def select_links(candidates: list[torch.Tensor], errors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, the candidate ``[P, 2, h, w]`` with the lowest error ``[P, h, w]``: ``(links, choice [P, h, w])``."""
    err = torch.stack(errors)  # [K, P, h, w]
    choice = err.argmin(0)
    stacked = torch.stack(candidates)  # [K, P, 2, h, w]
    best = stacked.gather(0, choice.unsqueeze(0).unsqueeze(2).expand(1, -1, 2, -1, -1))[0]
    return best, choice


# ----------------------------------------------------------------------------- trajectories and Eq. 7


def trajectory_of(frame: int, next_idx: torch.Tensor, prev_idx: torch.Tensor) -> torch.Tensor:
    """Positions of frame ``frame``'s tokens in every frame: ``[F, N]`` long (-1 after leaving the frame).

    next_idx: ``[F-1, N]`` token of frame ``i + 1`` linked to each token of frame ``i``;
    prev_idx: ``[F-1, N]`` token of frame ``i`` linked to each token of frame ``i + 1``.
    """
    frames, n = next_idx.shape[0] + 1, next_idx.shape[1]
    pos = torch.full((frames, n), -1, dtype=torch.long, device=next_idx.device)
    pos[frame] = torch.arange(n, device=next_idx.device)
    for j in range(frame + 1, frames):
        prev = pos[j - 1]
        pos[j] = torch.where(prev >= 0, next_idx[j - 1].gather(0, prev.clamp_min(0)), prev)
    for j in range(frame - 1, -1, -1):
        prev = pos[j + 1]
        pos[j] = torch.where(prev >= 0, prev_idx[j].gather(0, prev.clamp_min(0)), prev)
    return pos


def trajectory_attention(
    q_hat: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    next_idx: torch.Tensor,
    prev_idx: torch.Tensor,
    budget: int = 1 << 24,
    radius: int = 0,
) -> torch.Tensor:
    """Eq. 7 for one stream: ``q_hat, k, v [F, N, H * D]`` -> ``[F, N, H * D]``.

    radius: how many frames on each side the trajectory reaches (0 = all frames, the paper); a
    radius makes the cost linear in frames instead of quadratic.

    Token ``p`` of frame ``i`` attends to ``K, V`` at its trajectory positions in the other
    frames (``Traj - p``): one query against at most ``F - 1`` keys, so the softmax is written out
    (einsum; SDPA is slow for a batch of length-1 queries). Memory per call is ``O(F * N * H * D)`` (one query frame at a time, tokens in
    chunks of at most ``budget`` gathered elements).
    """
    frames, n, width = k.shape
    if frames == 1:
        return q_hat.clone()
    out = torch.empty_like(q_hat)
    chunk = max(1, min(n, budget // max(1, (frames - 1) * width)))  # tokens per gather
    for i in range(frames):
        lo, hi = (0, frames) if radius <= 0 else (max(0, i - radius), min(frames, i + radius + 1))
        pos = trajectory_of(i, next_idx, prev_idx)
        others = torch.cat([pos[lo:i], pos[i + 1 : hi]])  # [T, N], T <= F-1 frames on the trajectory
        frame_ids = torch.cat([torch.arange(lo, i), torch.arange(i + 1, hi)]).to(k.device)
        for s in range(0, n, chunk):
            idx = others[:, s : s + chunk]  # [F-1, c]
            valid = idx >= 0
            flat = frame_ids.view(-1, 1) * n + idx.clamp_min(0)
            kk = k.reshape(frames * n, width)[flat]  # [F-1, c, HD]
            vv = v.reshape(frames * n, width)[flat]
            qq = rearrange(q_hat[i, s : s + chunk], "c (h d) -> c h d", h=heads)
            kk = rearrange(kk, "t c (h d) -> t c h d", h=heads)
            vv = rearrange(vv, "t c (h d) -> t c h d", h=heads)
            any_valid = valid.any(0)  # [c]
            scores = torch.einsum("chd,tchd->tch", qq.float(), kk.float()) * (qq.shape[-1] ** -0.5)
            scores = scores.masked_fill(~valid.unsqueeze(-1), float("-inf"))
            weights = torch.softmax(scores.masked_fill(~any_valid.view(1, -1, 1), 0.0), 0)
            o = torch.einsum("tch,tchd->chd", weights, vv.float())
            o = rearrange(o, "c h d -> c (h d)")
            out[i, s : s + chunk] = torch.where(any_valid.unsqueeze(-1), o.to(out.dtype), q_hat[i, s : s + chunk])
    return out


# ----------------------------------------------------------------------------- the self-correction


@dataclass
class CorrectionStats:
    """How often each candidate won at the last correction (token counts), for logging and tests."""

    counts: dict = field(default_factory=lambda: {c: 0 for c in CANDIDATES})


class SelfCorrectedTrajectories:
    """Chooses the links of every layer and stream per step, remembering the best ones (history)."""

    def __init__(self, window: int = 5):
        check_range(window, "search_window", 1, 15, integer=True)
        if window % 2 == 0:
            raise InputError("search_window", f"must be odd, got {window}", "use 1, 3, 5, 7, ...")
        self.window = window
        self.history: dict = {}
        self.stats = CorrectionStats()

    def reset(self) -> None:
        """Forget the historically-best links (a new sampling run); ``stats`` keep counting."""
        self.history.clear()

    def links(self, key, feats: torch.Tensor, size: tuple[int, int], flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, x0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(next_idx, prev_idx)`` ``[F-1, N]`` for one stream.

        key: identifies layer and stream for the history. feats: ``[F, N, D]`` key features.
        flow_fwd / flow_bwd: ``[F-1, 2, H, W]`` pixel flows (any resolution; resized here).
        x0: ``[F, C, H0, W0]`` the current clean estimate (None: flow-based links only).
        """
        h, w = size
        frames = feats.shape[0]
        flows = torch.cat([flow_fwd, flow_bwd]).to(feats.device)
        a_ids = torch.cat([torch.arange(frames - 1), torch.arange(1, frames)]).to(feats.device)
        b_ids = torch.cat([torch.arange(1, frames), torch.arange(frames - 1)]).to(feats.device)
        flow_disp = flow_links(flows, (h, w))
        if x0 is None:
            best = flow_disp
        else:
            sim_disp = similarity_links(feats[a_ids], feats[b_ids], (h, w), flow_disp, self.window)
            x0 = x0.to(feats.device)
            candidates = [flow_disp, sim_disp]
            hist = self.history.get(key)
            if hist is not None and hist.shape == flow_disp.shape:
                candidates.append(hist)
            errors = [patch_warp_error(x0[a_ids], x0[b_ids], c) for c in candidates]
            best, choice = select_links(candidates, errors)
            for i, name in enumerate(CANDIDATES[: len(candidates)]):
                self.stats.counts[name] += int((choice == i).sum())
        self.history[key] = best
        idx = link_targets(best)
        return idx[: frames - 1], idx[frames - 1 :]


# ----------------------------------------------------------------------------- the SLR layer


class SLRTemporalAttention:
    """Short-long-range temporal attention (Fig. 2): cross-neighbour attention, then trajectory attention.

    Call with the self-attention projections ``q, k, v [S * F, N, H * D]`` of an image UNet layer.
    Trajectory attention needs a flow (``set_flow``) or an ``x0_hat`` to estimate one from
    (``set_x0``), both in frames' layout ``[F, ...]``; the node sets them between steps.
    """

    def __init__(self, cross_neighbour: bool = True, trajectory: bool = True, window: int = 5, boundary: str = "clamp", flow_estimator=None, radius: int = 0):
        check_range(radius, "trajectory_radius", 0, 1024, integer=True)
        self.radius = radius
        self.cross_neighbour = cross_neighbour
        self.trajectory = trajectory
        self.boundary = boundary
        self.corrector = SelfCorrectedTrajectories(window)
        self.flow_estimator = flow_estimator  # frames [F, C, H, W] -> (forward, backward) pixel flows
        self.fixed_flow: tuple[torch.Tensor, torch.Tensor] | None = None
        self.x0: torch.Tensor | None = None
        self._x0_flow: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Start of a sampling run: forget x0_hat, its flow and the trajectory history."""
        self.x0 = None
        self._x0_flow = None
        self.corrector.reset()

    def set_flow(self, forward: torch.Tensor | None, backward: torch.Tensor | None) -> None:
        """A flow of the input video ``[F-1, 2, H, W]`` (pixels, any resolution) used instead of estimating one."""
        self.fixed_flow = None if forward is None else (forward, backward)

    def set_x0(self, x0: torch.Tensor) -> None:
        """The clean estimate ``x0_hat [F, C, H, W]`` of the step just taken (used at the next step)."""
        self.x0 = x0.detach()
        self._x0_flow = None

    def flow(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Forward/backward flows for the trajectories: the fixed flow, else estimated from x0_hat (cached per step)."""
        if self.fixed_flow is not None:
            return self.fixed_flow
        if self.x0 is None or self.flow_estimator is None or self.x0.shape[0] < 2:
            return None
        if self._x0_flow is None:
            self._x0_flow = self.flow_estimator(self.x0.float())
        return self._x0_flow

    def __call__(self, q, k, v, heads: int, streams: int, size: tuple[int, int], layer=None, stream_ids=None, trajectory_active: bool = True) -> torch.Tensor:
        """SLR attention on ``q, k, v [S * F, N, H * D]``; ``size = (h, w)`` token grid (``h * w = N``)."""
        if size[0] * size[1] != q.shape[1]:
            raise InputError("size", f"token grid {size} does not hold {q.shape[1]} tokens", "pass the layer's (height, width)")
        if self.cross_neighbour:
            out = cross_neighbour_attention(q, k, v, heads, streams, self.boundary)
        else:
            out = self_attention(q, k, v, heads)
        frames = q.shape[0] // streams
        if not (self.trajectory and trajectory_active) or frames < 2:
            return out
        flow = self.flow()
        if flow is None:
            return out
        x0 = self.x0 if self.x0 is not None and self.x0.shape[0] == frames else None
        fwd, bwd = flow
        if fwd.shape[0] != frames - 1:
            raise InputError("flow", f"describes {fwd.shape[0] + 1} frames but the latent batch has {frames}", "estimate the flow from the same video you sample")
        stream_ids = list(range(streams)) if stream_ids is None else list(stream_ids)
        result = torch.empty_like(out)
        for s in range(streams):
            sl = slice(s * frames, (s + 1) * frames)
            next_idx, prev_idx = self.corrector.links((layer, stream_ids[s]), k[sl], size, fwd, bwd, x0)
            result[sl] = trajectory_attention(out[sl], k[sl], v[sl], heads, next_idx, prev_idx, radius=self.radius)
        return result
