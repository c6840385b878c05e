"""Per-step time and peak memory of SLR Temporal Attention versus plain self-attention at 8, 16, 32 frames.

Two tables:

1. layer: one SLR layer call (cross-neighbour + trajectory attention with the self-correction, the
   flow given) against plain spatial self-attention, on random ``q, k, v [2F, N, 320]`` (cond + uncond).
   Needs only torch; uses CUDA when available.
2. model (needs ComfyUI, ``COMFYUI_PATH``): one sampling step (KSampler, 1 step, CFG) of the tiny SD1.5
   checkpoint patched versus unpatched.

For each frame count: the time ratio (patched / unpatched, median of alternating rounds) and the peak
memory of both; ``peak / frames`` staying flat shows memory linear in frames. Run::

    python benchmarks/bench_slr_attention.py [--frames 8 16 32] [--tokens 32] [--latent 16] [--radius 0] [--skip-model]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import compare, format_bytes, print_table  # noqa: E402


def layer_rows(frame_counts, tokens: int, width: int = 320, heads: int = 8, repeats: int = 3, device=None, radius: int = 0) -> list[dict]:
    from video_enhance_kit.attention.cross_frame import self_attention
    from video_enhance_kit.attention.trajectory import SLRTemporalAttention

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for frames in frame_counts:
        g = torch.Generator(device="cpu").manual_seed(frames)
        q, k, v = (torch.randn(2 * frames, tokens * tokens, width, generator=g).to(device) for _ in range(3))
        flow = torch.full((frames - 1, 2, tokens, tokens), 1.0, device=device)
        x0 = torch.randn(frames, 4, tokens, tokens, generator=g).to(device)
        slr = SLRTemporalAttention(window=5, radius=radius)
        slr.set_flow(flow, -flow)
        slr.set_x0(x0)

        def patched():
            return slr(q, k, v, heads, 2, (tokens, tokens), layer="bench", stream_ids=[0, 1])

        def plain():
            return self_attention(q, k, v, heads)

        res = compare(patched, plain, warmup=1, repeats=repeats, label=f"layer {frames} frames" + (f", radius {radius}" if radius else ""), device=device, show=False)
        rows.append(summary(res, frames))
    return rows


def model_rows(frame_counts, latent: int, repeats: int = 3) -> list[dict]:
    from video_enhance_kit.host import ComfyHost, describe_missing_comfyui, find_comfyui

    if find_comfyui() is None:
        print(f"model table skipped: {describe_missing_comfyui()}")
        return []
    host = ComfyHost.start(tiny_models=True)
    model, clip, _vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="")
    patched, = host.run_node("VEK_SLRTemporalAttention", model=model, cross_neighbour=True, trajectory=True, trajectory_start=0.0,
                             output_blocks="all", search_window=5, boundary="clamp")
    rows = []
    for frames in frame_counts:
        lat = {"samples": torch.randn(frames, 4, latent, latent, generator=torch.Generator().manual_seed(frames))}

        def step(m):
            return lambda: host.run_node("KSampler", model=m, seed=0, steps=1, cfg=5.0, sampler_name="euler", scheduler="normal",
                                         positive=pos, negative=neg, latent_image=lat, denoise=1.0)

        res = compare(step(patched), step(model), warmup=1, repeats=repeats, label=f"model {frames} frames", show=False)
        rows.append(summary(res, frames))
    return rows


def summary(res, frames: int) -> dict:
    row = {
        "case": res.label,
        "patched ms": f"{1e3 * res.median:.1f}",
        "unpatched ms": f"{1e3 * res.baseline_median:.1f}",
        "time ratio": f"{res.ratio:.2f}",
    }
    if res.peak is not None:
        row.update({
            "patched peak": format_bytes(res.peak.bytes),
            "unpatched peak": format_bytes(res.baseline_peak.bytes),
            "patched peak/frame": format_bytes(res.peak.bytes / frames),
            "memory ratio": f"{res.peak.bytes / max(1, res.baseline_peak.bytes):.2f}",
        })
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--tokens", type=int, default=32, help="attention grid side for the layer table (32 = SD1.5 at 256 px)")
    parser.add_argument("--latent", type=int, default=16, help="latent side for the model table (16 = 128 px)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--radius", type=int, default=0, help="trajectory_radius of the layer table (0 = all frames, the paper)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    rows = layer_rows(args.frames, args.tokens, repeats=args.repeats, radius=args.radius)
    print_table(rows)
    if not args.skip_model:
        rows = model_rows(args.frames, args.latent, repeats=args.repeats)
        if rows:
            print_table(rows)


if __name__ == "__main__":
    main()
