"""Warping error of an SDEdit-refined synthetic video with and without SLR Temporal Attention (tiny SD1.5).

Closing-note evidence for issue 4. A textured image translating by a known sub-pixel motion (>= 16
frames) is encoded with the tiny SD1.5 checkpoint's VAE, refined frame by frame with KSampler (SDEdit,
same seed, CFG) by the unpatched model, by the model patched with cross-neighbour attention only and with
cross-neighbour + trajectory attention, decoded, and scored with the warping error (Lai et al.; the
``utils.metrics`` definition) using the ground-truth flow and its occlusion mask. Lower is steadier.

The tiny model has random weights, so the numbers show the mechanism (frames made to agree through the
attention), not image quality. Run::

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_slr_attention_we.py [--frames 16 --size 128 --steps 10 --denoise 0.6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import print_table


def moving_video(frames: int, size: int, shift=(0.75, 0.4), seed: int = 0) -> torch.Tensor:
    """``[F, 3, size, size]`` in 0..1: a smooth colour texture translating by ``shift`` px per frame."""
    from kornia.filters import gaussian_blur2d
    from video_enhance_kit.utils.warp import warp

    pad = int(abs(shift[0]) * frames + abs(shift[1]) * frames) + 8
    g = torch.Generator().manual_seed(seed)
    big = gaussian_blur2d(torch.rand(1, 3, size + 2 * pad, size + 2 * pad, generator=g), (15, 15), (3.0, 3.0))
    big = (big - big.amin()) / (big.amax() - big.amin())
    out = []
    for i in range(frames):
        flow = torch.zeros(1, 2, *big.shape[-2:])
        flow[:, 0], flow[:, 1] = -shift[0] * i, -shift[1] * i
        out.append(warp(big, flow)[..., pad : pad + size, pad : pad + size])
    return torch.cat(out)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--denoise", type=float, default=0.6)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trajectory-start", type=float, default=0.5, help="trajectory_start of the patch (0.9 = paper; SDEdit at denoise 0.6 with few steps reaches it only in the last step or two)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    from video_enhance_kit.host import ComfyHost, describe_missing_comfyui, find_comfyui
    from video_enhance_kit.utils.flow import consistency_mask
    from video_enhance_kit.utils.metrics import warping_error

    if find_comfyui() is None:
        raise SystemExit(describe_missing_comfyui())
    host = ComfyHost.start(tiny_models=True)
    model, clip, vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a detailed photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry, flicker")

    shift = (0.75, 0.4)
    video = moving_video(args.frames, args.size, shift)
    true_back = torch.tensor([-shift[0], -shift[1]]).view(1, 2, 1, 1).expand(args.frames - 1, 2, args.size, args.size).contiguous()
    mask = consistency_mask(true_back, -true_back)
    latent, = host.run_node("VAEEncode", pixels=video.movedim(1, -1).contiguous(), vae=vae)

    def refine(m):
        out, = host.run_node("KSampler", model=m, seed=args.seed, steps=args.steps, cfg=args.cfg, sampler_name="euler", scheduler="normal",
                             positive=pos, negative=neg, latent_image=latent, denoise=args.denoise)
        images, = host.run_node("VAEDecode", samples=out, vae=vae)
        return images.movedim(-1, 1).float()

    variants = [
        ("input video", None),
        ("decoded input (VAE round trip)", "roundtrip"),
        ("SDEdit, unpatched", model),
        ("SDEdit + SLR (cross-neighbour only)", ("patch", dict(trajectory=False))),
        ("SDEdit + SLR (cross-neighbour + trajectory)", ("patch", dict(trajectory=True))),
    ]
    rows = []
    for label, how in variants:
        t0 = time.perf_counter()
        if how is None:
            frames = video
        elif how == "roundtrip":
            frames = host.run_node("VAEDecode", samples=latent, vae=vae)[0].movedim(-1, 1).float()
        elif isinstance(how, tuple):
            kw = dict(cross_neighbour=True, trajectory_start=args.trajectory_start, output_blocks="all", search_window=5, boundary="clamp")
            kw.update(how[1])
            patched, = host.run_node("VEK_SLRTemporalAttention", model=model, **kw)
            frames = refine(patched)
        else:
            frames = refine(how)
        we = float(warping_error(frames, true_back, mask))
        rows.append({"video": label, "WE x100": f"{100 * we:.4f}", "seconds": f"{time.perf_counter() - t0:.1f}"})
        print(rows[-1], flush=True)
    print(f"\n{args.frames} frames {args.size}x{args.size}, motion {shift} px/frame, KSampler euler/normal {args.steps} steps denoise {args.denoise} cfg {args.cfg} seed {args.seed}, tiny SD1.5 (random weights)")
    print_table(rows)


if __name__ == "__main__":
    main()
