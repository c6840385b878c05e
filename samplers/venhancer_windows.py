"""Temporal windows and spatial tiles of VEnhancer's prediction at the model-call level (issues 11.4, 13.1).

One model call ``predict(x, conds) -> prediction`` on a latent ``x [B, C, F, H, W]`` (the network's layout,
:mod:`~video_enhance_kit.models.venhancer`) is replaced by one call per time window x spatial tile:

- time: the official key-frame-aligned windows (:func:`~.venhancer.make_chunks`: 32 frames, 50 % overlap),
  blended with the official linear cross-fade of :func:`~.venhancer.crossfade_chunks` (bit for bit);
- space: overlapping tiles of ``tile_size`` latent pixels with ``tile_overlap``, blended with separable
  raised-cosine weights ``w = sin^2(pi/2 (i + 1/2) / overlap)`` over each inner overlap (1 elsewhere, never
  zero), normalised by their sum, so the weights of every pixel add up to 1.

Conditions are sliced alike by :class:`CondAxes` (which axis of a tensor is frames, height, width);
:data:`VENHANCER_COND_AXES` marks the ControlNet's: ``hint [B, C, K, H, W]`` (key frames, picked by the
global key index in ``mask_cond``, so sliced in space only), ``mask_cond [B, F]`` (per frame), and
``t_hint`` / ``s_cond`` / ``context`` (whole). A :class:`WindowPlan` is built once per run; its weights are
built once per device and dtype, so a model call reads nothing back from the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..utils.checks import InputError
from .venhancer import make_chunks

Predict = Callable[[torch.Tensor, dict], torch.Tensor]
SizeOk = Callable[[int, int], bool]


@dataclass(frozen=True)
class CondAxes:
    """The axes of a condition tensor that follow the latent: frames (length F), height (H), width (W); None = whole."""

    frame: int | None = None
    height: int | None = None
    width: int | None = None


WHOLE = CondAxes()
#: The VEnhancer ControlNet's conditions (``models.venhancer.VEnhancerUNet.forward``); unknown keys pass whole.
VENHANCER_COND_AXES: dict[str, CondAxes] = {
    "hint": CondAxes(height=-2, width=-1),  # [B, C, K, H, W]: K key frames indexed by mask_cond's global index
    "mask_cond": CondAxes(frame=1),  # [B, F]: key-frame index per frame or -1
    "t_hint": WHOLE,  # [B]
    "s_cond": WHOLE,  # [B]
    "context": WHOLE,  # [B, L, D]
}


@dataclass(frozen=True)
class WindowPlan:
    """Windows and tiles of one run on a latent of ``frames x height x width``.

    windows: ``[start, end)`` frame ranges (one ``(0, frames)`` when windows are off). tiles: ``(h0, h1, w0, w1)``
    boxes, all ``tile_size`` large (one box covering the latent when tiles are off); ``tile_size`` None = off.
    """

    frames: int
    height: int
    width: int
    windows: tuple[tuple[int, int], ...]
    tiles: tuple[tuple[int, int, int, int], ...]
    tile_size: tuple[int, int] | None = None
    tile_overlap: int = 0
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def windowed(self) -> bool:
        return len(self.windows) > 1

    @property
    def tiled(self) -> bool:
        return len(self.tiles) > 1

    @property
    def calls(self) -> int:
        """Model calls per prediction (windows x tiles)."""
        return len(self.windows) * len(self.tiles)

    def weights(self, device, dtype) -> PlanWeights:
        """The blend weights on ``device`` in ``dtype``, built on the first call and cached (once per run)."""
        key = (torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = build_weights(self, torch.device(device), dtype)
        return self._cache[key]


@dataclass(frozen=True)
class PlanWeights:
    """Precomputed blend weights: per tile its normalised ``[th, tw]`` weight; per window k > 0 the cross-fade coef."""

    tiles: tuple[torch.Tensor, ...]
    fades: tuple[tuple[torch.Tensor, torch.Tensor] | None, ...]
    overlap: int


# --------------------------------------------------------------------------------------------- plan


def plan_windows(
    frames: int,
    height: int,
    width: int,
    *,
    interp: int = 0,
    chunk_length: int | None = 32,
    chunk_overlap: float = 0.5,
    tile_size: int | Sequence[int] | None = None,
    tile_overlap: int = 8,
    size_ok: SizeOk | None = None,
) -> WindowPlan:
    """The windows and tiles of a run; ``chunk_length`` None = one window, ``tile_size`` None (or 0) = no tiles.

    Windows are the official ones (:func:`~.venhancer.make_chunks`; ``interp`` frames between key frames).
    ``tile_size`` (int or (h, w)) and ``tile_overlap`` are in latent pixels; with ``size_ok(h, w)`` (e.g.
    ``models.venhancer.latent_size_ok``) each tile side is rounded down to the nearest size the network takes.
    """
    windows = _windows(frames, interp, chunk_length, chunk_overlap)
    size = _tile_size(tile_size, tile_overlap, height, width, size_ok)
    if size is None:
        return WindowPlan(frames, height, width, windows, ((0, height, 0, width),))
    hs, ws = tile_starts(height, size[0], tile_overlap), tile_starts(width, size[1], tile_overlap)
    tiles = tuple((h, h + size[0], w, w + size[1]) for h in hs for w in ws)
    return WindowPlan(frames, height, width, windows, tiles, size, tile_overlap)


def _windows(frames: int, interp: int, chunk_length: int | None, chunk_overlap: float) -> tuple[tuple[int, int], ...]:
    if chunk_length is None:
        return ((0, frames),)
    if chunk_length < interp + 2:
        raise InputError("chunk_length", f"{chunk_length} frames cannot hold two key frames {interp} frames apart",
                         f"set chunk_length to at least {interp + 2} (official: 32)")
    if not 0 < chunk_overlap < 1:
        raise InputError("chunk_overlap", f"must be in (0, 1), got {chunk_overlap}", "set chunk_overlap to 0.5 (official)")
    return tuple(make_chunks(frames, interp, chunk_length, chunk_overlap) or [(0, frames)])


def _tile_size(tile_size, overlap: int, height: int, width: int, size_ok: SizeOk | None) -> tuple[int, int] | None:
    """Check tile_size / tile_overlap against the latent; the (h, w) tile, or None when tiles are off."""
    if tile_size is None or tile_size == 0:
        return None
    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else (int(tile_size[0]), int(tile_size[1]))
    if th < 1 or tw < 1:
        raise InputError("tile_size", f"must be positive, got {tile_size!r}", "set tile_size to a positive size or off")
    if th > height or tw > width:
        raise InputError("tile_size", f"{th}x{tw} latent pixels is larger than the latent ({height}x{width})",
                         f"set tile_size to at most {min(height, width)} (or {height}x{width}), or turn tiles off")
    if overlap < 0 or overlap >= min(th, tw):
        raise InputError("tile_overlap", f"{overlap} must be at least 0 and less than the tile size {th}x{tw}",
                         f"set tile_overlap below {min(th, tw)} (e.g. {min(th, tw) // 4})")
    if size_ok is not None:
        th, tw = fit_tile(th, tw, height, width, size_ok)
        if overlap >= min(th, tw):
            raise InputError("tile_overlap", f"{overlap} is not less than the tile the network takes ({th}x{tw})",
                             f"set tile_overlap below {min(th, tw)}")
    return th, tw


def fit_tile(th: int, tw: int, height: int, width: int, size_ok: SizeOk) -> tuple[int, int]:
    """Round each side down to the nearest size the network takes (the latent itself always fits)."""
    h = next((v for v in range(th, 0, -1) if size_ok(v, width)), None)
    w = next((v for v in range(tw, 0, -1) if h is not None and size_ok(h, v)), None)
    if h is None or w is None:
        raise InputError("tile_size", f"no tile of at most {th}x{tw} latent pixels fits the network", "raise tile_size or turn tiles off")
    return h, w


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of equal tiles covering ``[0, length)`` with at least ``overlap`` shared pixels, evenly spread."""
    if tile >= length:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


# ------------------------------------------------------------------------------------------ weights


def raised_cosine(n: int) -> torch.Tensor:
    """Ramp ``sin^2(pi/2 (i + 1/2) / n)``, i = 0..n-1 (float64): rises from near 0 to near 1, never 0; r(u) + r(1-u) = 1."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.sin(0.5 * math.pi * u) ** 2


def axis_weight(starts: Sequence[int], tile: int, j: int) -> torch.Tensor:
    """Weight of tile j along one axis [tile] (float64): ramps over the overlaps with its neighbours, 1 elsewhere."""
    w = torch.ones(tile, dtype=torch.float64)
    if j > 0:
        o = starts[j - 1] + tile - starts[j]
        if o > 0:
            w[:o] *= raised_cosine(o)
    if j < len(starts) - 1:
        o = starts[j] + tile - starts[j + 1]
        if o > 0:
            w[tile - o:] *= raised_cosine(o).flip(0)
    return w


def tile_weights(plan: WindowPlan) -> list[torch.Tensor]:
    """Per tile its [th, tw] weight divided by the sum over tiles at each pixel (float64, CPU): they add up to 1."""
    if not plan.tiled:
        return [torch.ones(plan.height, plan.width, dtype=torch.float64)]
    th, tw = plan.tile_size
    hs = sorted({t[0] for t in plan.tiles})
    ws = sorted({t[2] for t in plan.tiles})
    raw = [axis_weight(hs, th, hs.index(h0))[:, None] * axis_weight(ws, tw, ws.index(w0))[None, :] for h0, _, w0, _ in plan.tiles]
    total = torch.zeros(plan.height, plan.width, dtype=torch.float64)
    for (h0, h1, w0, w1), w in zip(plan.tiles, raw):
        total[h0:h1, w0:w1] += w
    return [w / total[h0:h1, w0:w1] for (h0, h1, w0, w1), w in zip(plan.tiles, raw)]


def build_weights(plan: WindowPlan, device: torch.device, dtype: torch.dtype) -> PlanWeights:
    """The plan's weights on ``device``: tiles normalised; the cross-fade coefs exactly as crossfade_chunks makes them."""
    tiles = tuple(w.to(device=device, dtype=dtype) for w in tile_weights(plan))
    ws = plan.windows
    overlap = ws[0][1] - ws[1][0] if len(ws) > 1 else 0
    fades: list[tuple[torch.Tensor, torch.Tensor] | None] = [None]
    for k in range(1, len(ws)):
        n = min(overlap, ws[k - 1][1] - ws[k - 1][0], ws[k][1] - ws[k][0])
        if overlap <= 0 or n <= 0:
            fades.append(None)
            continue
        coef = (torch.arange(n, dtype=torch.float32, device=device) / n).to(dtype).view(1, 1, n, 1, 1)
        fades.append((coef, 1 - coef))
    return PlanWeights(tiles, tuple(fades), overlap)


# --------------------------------------------------------------------------------------- prediction


def slice_conds(conds: Mapping, axes: Mapping[str, CondAxes], frames: slice, rows: slice, cols: slice, shape: tuple[int, int, int]) -> dict:
    """Each condition cut to one window x tile along the axes ``axes`` names (others whole); checks the sizes."""
    out = {}
    for name, value in conds.items():
        ax = axes.get(name, WHOLE)
        if not isinstance(value, torch.Tensor) or ax == WHOLE:
            out[name] = value
            continue
        index = [slice(None)] * value.ndim
        for dim, sl, size, what in ((ax.frame, frames, shape[0], "frames"), (ax.height, rows, shape[1], "height"), (ax.width, cols, shape[2], "width")):
            if dim is None:
                continue
            if value.shape[dim] != size:
                raise InputError(name, f"has {value.shape[dim]} along its {what} axis {dim} (shape {tuple(value.shape)}), the latent {size}",
                                 f"build '{name}' from the same latent (frames, size) the sampler runs on")
            index[dim] = sl
        out[name] = value[tuple(index)]
    return out


def windowed_prediction(predict: Predict, x: torch.Tensor, plan: WindowPlan, conds: Mapping | None = None,
                        axes: Mapping[str, CondAxes] = VENHANCER_COND_AXES) -> torch.Tensor:
    """``predict(x, conds)`` per window x tile of ``x [B, C, F, H, W]``, blended (time: cross-fade; space: tile weights).

    One window and one tile: exactly ``predict(x, conds)``. ``conds`` are sliced by ``axes``
    (:data:`VENHANCER_COND_AXES` by default). The prediction may have another channel count or dtype than x.
    """
    conds = dict(conds or {})
    if x.ndim != 5 or tuple(x.shape[2:]) != (plan.frames, plan.height, plan.width):
        raise InputError("latent", f"shape {tuple(x.shape)} does not match the window plan (B, C, {plan.frames}, {plan.height}, {plan.width})",
                         "build the window plan from the latent being sampled")
    if not plan.windowed and not plan.tiled:
        return predict(x, conds)
    weights = plan.weights(x.device, x.dtype)
    out, prev, pos = None, None, 0
    for k, (a, b) in enumerate(plan.windows):
        chunk = _window_prediction(predict, x, plan, conds, axes, weights, slice(a, b))
        chunk, keep = _fade(chunk, prev, weights, k, len(plan.windows))
        if out is None:
            out = chunk.new_empty((*chunk.shape[:2], plan.frames, *chunk.shape[3:]))
        out[:, :, pos: pos + keep] = chunk[:, :, :keep]  # placed where crossfade_chunks' concatenation puts it
        prev, pos = chunk, pos + keep
    return out


def _fade(chunk: torch.Tensor, prev: torch.Tensor | None, weights: PlanWeights, k: int, count: int) -> tuple[torch.Tensor, int]:
    """crossfade_chunks' step k: blend the head with the previous (blended) window; how many frames it keeps."""
    fade = weights.fades[k]
    if prev is not None and fade is not None:
        coef, rest = fade
        n = coef.shape[2]
        head = prev[:, :, -n:] * rest + chunk[:, :, :n] * coef
        chunk = torch.cat([head, chunk[:, :, n:]], dim=2)
    keep = chunk.shape[2] - weights.overlap if k != count - 1 else chunk.shape[2]
    return chunk, keep


def _window_prediction(predict: Predict, x, plan: WindowPlan, conds: dict, axes, weights: PlanWeights, frames: slice) -> torch.Tensor:
    """One window: the prediction of each tile, weighted by its normalised weight and summed (one tile: as is)."""
    shape = (plan.frames, plan.height, plan.width)
    if not plan.tiled:
        full = slice(None)
        return _checked(predict(x[:, :, frames], slice_conds(conds, axes, frames, full, full, shape)), x[:, :, frames])
    acc = None
    for (h0, h1, w0, w1), w in zip(plan.tiles, weights.tiles):
        rows, cols = slice(h0, h1), slice(w0, w1)
        xs = x[:, :, frames, rows, cols]
        pred = _checked(predict(xs, slice_conds(conds, axes, frames, rows, cols, shape)), xs)
        if acc is None:
            acc = pred.new_zeros((*pred.shape[:3], plan.height, plan.width))
        acc[:, :, :, rows, cols] += pred * w.to(pred.dtype)
    return acc


def _checked(pred: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    if pred.ndim != 5 or pred.shape[0] != xs.shape[0] or tuple(pred.shape[2:]) != tuple(xs.shape[2:]):
        raise ValueError(f"predict returned shape {tuple(pred.shape)} for an input of shape {tuple(xs.shape)}: it must keep B, F, H, W")
    return pred


# -------------------------------------------------------------------------------------------- seams


@dataclass(frozen=True)
class SeamError:
    """Mean |step| between neighbouring pixels across tile borders (``border``) and elsewhere (``interior``)."""

    border: float
    interior: float

    @property
    def ratio(self) -> float:
        """border / interior: about 1 when the borders do not show, above 1 for a visible seam."""
        return self.border / self.interior if self.interior > 0 else float("inf")


def border_lines(length: int, boxes: Sequence[tuple[int, int]]) -> list[int]:
    """Indices i of the steps (i -> i + 1) where a tile starts or ends inside ``[0, length)``."""
    edges = {a for a, _ in boxes if a > 0} | {b for _, b in boxes if b < length}
    return sorted(e - 1 for e in edges)


def seam_error(y: torch.Tensor, plan: WindowPlan) -> SeamError:
    """Seam metric of an output ``y [..., H, W]`` tiled by ``plan``: steps across tile borders vs the interior (a report, not a hot path)."""
    dh = (y[..., 1:, :] - y[..., :-1, :]).abs().double()
    dw = (y[..., :, 1:] - y[..., :, :-1]).abs().double()
    mh = torch.zeros(plan.height - 1, dtype=torch.bool)
    mw = torch.zeros(plan.width - 1, dtype=torch.bool)
    mh[border_lines(plan.height, [(t[0], t[1]) for t in plan.tiles])] = True
    mw[border_lines(plan.width, [(t[2], t[3]) for t in plan.tiles])] = True
    mh, mw = mh.to(y.device), mw.to(y.device)
    border = torch.cat([dh[..., mh, :].flatten(), dw[..., :, mw].flatten()])
    interior = torch.cat([dh[..., ~mh, :].flatten(), dw[..., :, ~mw].flatten()])
    b = float(border.mean()) if border.numel() else 0.0
    return SeamError(b, float(interior.mean()) if interior.numel() else 0.0)


__all__ = [
    "VENHANCER_COND_AXES",
    "CondAxes",
    "PlanWeights",
    "SeamError",
    "WindowPlan",
    "axis_weight",
    "border_lines",
    "build_weights",
    "fit_tile",
    "plan_windows",
    "raised_cosine",
    "seam_error",
    "slice_conds",
    "tile_starts",
    "tile_weights",
    "windowed_prediction",
]
