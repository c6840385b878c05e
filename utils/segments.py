"""Long videos as overlapping segments: plan the segments, stitch the results with a linear cross-fade.

A long clip is split into segments of ``segment_frames`` frames overlapping by at least ``overlap`` frames,
every segment of the same length, which a frame rule may constrain (Wan and other 4x-temporal VAEs take
``4k + 1`` frames: ``FrameRule(4, 1)``). The last segment ends on the last frame (its overlap with the one
before can be longer than ``overlap``). Each segment is enhanced on its own (one workflow run); the results
are stitched back: frames that one segment alone covers are copied, and over each overlap the two results
are blended with weights that move linearly from the earlier segment to the later one,
``out = (1 - w_j) prev + w_j next`` with ``w_j = (j + 1) / (L + 1)`` for the ``L`` shared frames.

The seam: VEnhancer's own temporal windows cross-fade the model's prediction at every denoising step, so the
two sides agree by the end; segments are independent runs cross-faded once on the finished frames, so
content that the runs resolved differently (texture, small motion) blends over the overlap instead.

Results may differ from their inputs in size and in length when the workflow interpolates frames
(``out = (in - 1) * k + 1``): stitching maps input frame indices to output ones by that same factor.
Frames are ``[F, ...]`` tensors (IMAGE ``[F, H, W, C]`` or any layout with frames first).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .checks import InputError


@dataclass(frozen=True)
class FrameRule:
    """Valid frame counts ``modulus * k + remainder`` (``FrameRule(1, 0)``: any; ``FrameRule(4, 1)``: Wan)."""

    modulus: int = 1
    remainder: int = 0

    def accepts(self, frames: int) -> bool:
        return frames >= 1 and frames % self.modulus == self.remainder % self.modulus

    def largest_at_most(self, frames: int) -> int:
        """The largest valid count ``<= frames`` (0 if none)."""
        n = frames - ((frames - self.remainder) % self.modulus)
        return n if n >= 1 and self.accepts(n) else 0


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` of the input clip."""

    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_segments(total: int, segment_frames: int, overlap: int, rule: FrameRule = FrameRule()) -> list[Segment]:
    """Segments of ``segment_frames`` (valid under ``rule``) covering ``[0, total)``, neighbours sharing >= ``overlap`` frames."""
    if not rule.accepts(segment_frames):
        valid = rule.largest_at_most(segment_frames)
        raise InputError("segment-frames", f"{segment_frames} frames is not a count the workflow takes "
                         f"({rule.modulus}k + {rule.remainder})", f"use {valid or rule.modulus + rule.remainder}")
    if not 0 <= overlap < segment_frames:
        raise InputError("overlap", f"{overlap} must be at least 0 and below segment-frames ({segment_frames})",
                         "use an overlap of a few frames, e.g. a quarter of the segment")
    if total <= segment_frames:
        return [Segment(0, total)]
    step = segment_frames - overlap
    starts = list(range(0, total - segment_frames, step)) + [total - segment_frames]
    return [Segment(s, s + segment_frames) for s in starts]


def crossfade_weights(length: int, like: torch.Tensor) -> torch.Tensor:
    """``w_j = (j + 1) / (L + 1)``, ``[L, 1, ...]`` broadcastable over a frame's other axes."""
    w = torch.arange(1, length + 1, dtype=torch.float32, device=like.device) / (length + 1)
    return w.view(length, *([1] * (like.ndim - 1))).to(like.dtype)


def time_scale(segment: Segment, result: torch.Tensor) -> int:
    """Output frames per input frame step: 1, or ``k`` for a result of ``(frames - 1) k + 1`` frames."""
    if result.shape[0] == segment.frames:
        return 1
    k, rest = divmod(result.shape[0] - 1, max(1, segment.frames - 1))
    if rest or k < 1:
        raise InputError("workflow", f"a segment of {segment.frames} frames gave {result.shape[0]}; "
                         "stitching needs the same count or (frames - 1) * k + 1", "check the workflow's frame settings")
    return k


def stitch(results: list[torch.Tensor], plan: list[Segment]) -> torch.Tensor:
    """Join per-segment results ``[F_i, ...]`` into one clip, cross-fading linearly over each overlap."""
    if len(results) != len(plan) or not results:
        raise InputError("results", f"{len(results)} results for {len(plan)} segments", "give one result per segment")
    scales = {time_scale(seg, res) for seg, res in zip(plan, results, strict=True)}
    if len(scales) != 1 or len({tuple(r.shape[1:]) for r in results}) != 1:
        raise InputError("results", "segments came back with different lengths or frame sizes", "run every segment alike")
    k = scales.pop()
    out = results[0]
    for (prev, seg), res in zip(itertools.pairwise(plan), results[1:], strict=True):
        shared = (prev.end - seg.start - 1) * k + 1 if k > 1 else prev.end - seg.start
        w = crossfade_weights(shared, res)
        blend = (1 - w) * out[out.shape[0] - shared:] + w * res[:shared]
        out = torch.cat([out[:out.shape[0] - shared], blend, res[shared:]])
    return out


__all__ = ["FrameRule", "Segment", "crossfade_weights", "plan_segments", "stitch", "time_scale"]
