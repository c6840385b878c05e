"""The three candidate links of self-corrected trajectory attention (ZVRD, Fig. 2c, Eq. 6) and their errors.

A link field ``[P, 2, h, w]`` holds integer token displacements (dx, dy) for ``P`` frame pairs; see
:mod:`.trajectory` for how links are chosen and chained into trajectories.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils.flow import resize_flow
from ..utils.warp import warp


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


def window_offsets(window: int, like: torch.Tensor) -> torch.Tensor:
    """``[window^2, 2]`` (dx, dy) offsets of the search square, dy-major, built on ``like``'s device and dtype."""
    r = window // 2
    steps = torch.arange(-r, r + 1, device=like.device).to(like.dtype)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], 1)


def similarity_links(feat_a: torch.Tensor, feat_b: torch.Tensor, size: tuple[int, int], centre: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Similarity-based links (Eq. 6): per token of ``a``, the most cosine-similar token of ``b`` in a window.

    feat_a, feat_b: ``[P, N, D]`` with ``N = h * w``. centre: ``[P, 2, h, w]`` window centres (token
    displacements). window: odd side of the search square. Returns displacements ``[P, 2, h, w]``.
    """
    h, w = size
    fa = F.normalize(feat_a.float(), dim=-1)
    fb = F.normalize(feat_b.float(), dim=-1)
    p, n, d = fa.shape
    fa_flat, fb_flat = fa.reshape(p * n, d), fb.reshape(p * n, d)
    base = (torch.arange(p, device=fa.device) * n).view(p, 1)
    best = torch.full(fa.shape[:2], -2.0, device=fa.device)
    best_disp = centre.clone()
    for offset in window_offsets(window, centre):
        cand = centre + offset.view(1, 2, 1, 1)
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
