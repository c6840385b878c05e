"""Per-step overhead of SLR attention (trajectory on), temporal guidance and shared noise at 16 frames, 64x64 latents.

Core level, no ComfyUI: one sampling step is a small stand-in denoiser (one conv, one self-attention layer at the
latent's 64x64 token grid with cond + uncond stacked, one conv) called on ``[2F, 4, 64, 64]``; each feature adds
its per-step work to that step, exactly as the node layer calls it:

- SLR: the attention layer is :class:`SLRTemporalAttention` (cross-neighbour + self-corrected trajectory
  attention, a fixed flow, x0_hat of the previous step) instead of plain self-attention;
- guidance: :class:`TemporalConsistencyGuidance` (latent-space pixel loss with a fixed flow) on the step's x0;
- shared noise: :class:`SharedNoiseSampler` (share weight + Eq. 11 blending) draws the step's noise.

Each row: the median per-step time ratio (patched / unpatched step, alternating rounds in this process) and both
peak memories (``benchmarks/_bench.py``). Steps reuse one feature object, as a sampling run does. Run::

    python benchmarks/bench_hot_path.py [--frames 16] [--size 64] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import compare, format_bytes, print_table  # noqa: E402

WIDTH, HEADS = 64, 4


class StandInDenoiser(torch.nn.Module):
    """x -> x0: conv in, one attention layer over the token grid (the replaceable attn1), conv out."""

    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(4, WIDTH, 3, padding=1)
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.conv_out = torch.nn.Conv2d(WIDTH, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, attn) -> torch.Tensor:
        h = self.conv_in(x)
        b, c, hh, ww = h.shape
        q, k, v = self.qkv(h.flatten(2).transpose(1, 2)).chunk(3, -1)
        h = h + attn(q, k, v).transpose(1, 2).reshape(b, c, hh, ww)
        return self.conv_out(h)


def setup(frames: int, size: int, device):
    """The stand-in, its input, a fixed flow and the three features built once (per run)."""
    from video_enhance_kit.attention.cross_frame import self_attention
    from video_enhance_kit.attention.trajectory import SLRTemporalAttention
    from video_enhance_kit.samplers.guidance import GuidanceSettings, TemporalConsistencyGuidance
    from video_enhance_kit.samplers.shared_noise import SharedNoiseSampler

    g = torch.Generator().manual_seed(0)
    model = StandInDenoiser().to(device).eval().requires_grad_(False)
    x = torch.randn(2 * frames, 4, size, size, generator=g).to(device)
    fwd = (torch.randn(frames - 1, 2, size, size, generator=g) * 2).to(device)
    mask = torch.ones(frames - 1, 1, size, size, device=device)
    slr = SLRTemporalAttention(window=5)
    slr.set_flow(fwd, -fwd)
    slr.set_x0(torch.randn(frames, 4, size, size, generator=g).to(device))
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.2, gamma=0.0), flow=(-fwd, mask))
    noise = SharedNoiseSampler(lambda s, t: torch.randn(frames, 4, size, size, device=device), 1.0, (-fwd, mask), 0.2)
    return dict(model=model, x=x, size=size, frames=frames, slr=slr, guide=guide, noise=noise, plain=self_attention)


def steps(s: dict) -> dict:
    """Zero-argument callables: one step unpatched and with each feature."""
    model, x, frames, grid = s["model"], s["x"], s["frames"], (s["size"], s["size"])

    def plain_attn(q, k, v):
        return s["plain"](q, k, v, HEADS)

    def slr_attn(q, k, v):
        return s["slr"](q, k, v, HEADS, 2, grid, layer="bench", stream_ids=[0, 1])

    @torch.no_grad()
    def step(attn):
        return model(x, attn)

    return {
        "unpatched": lambda: step(plain_attn),
        "SLR (trajectory on)": lambda: step(slr_attn),
        "guidance": lambda: s["guide"](step(plain_attn)[:frames], 1.0),
        "shared noise": lambda: (step(plain_attn), s["noise"](1.0, 0.5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="latent side (64 = 512 px for SD1.5)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    calls = steps(setup(args.frames, args.size, args.device))
    rows = []
    for label, fn in calls.items():
        if label == "unpatched":
            continue
        res = compare(fn, calls["unpatched"], warmup=1, repeats=args.repeats, label=label, device=args.device, show=False)
        rows.append({"feature": label, "step ms": f"{1e3 * res.median:.1f}", "unpatched ms": f"{1e3 * res.baseline_median:.1f}",
                     "time ratio": f"{res.ratio:.2f}", "peak": format_bytes(res.peak.bytes), "unpatched peak": format_bytes(res.baseline_peak.bytes)})
    print(f"per-step overhead, {args.frames} frames, {args.size}x{args.size} latents, {args.device}")
    print_table(rows)


if __name__ == "__main__":
    main()
