"""ZVRD restoration: cost per step of the Degradation Consistency Guider (gdp, ddnm) against the unguided step (issue 15).

What it runs (real ComfyUI in-process with the tiny random-weight SD1.5-family model: COMFYUI_PATH, or the pack inside
ComfyUI/custom_nodes): a synthetic clip of ``--frames`` (default 16) frames at ``8 x --latent`` px (default 64x64
latents = 512 px frames), degraded by ``--operator`` (default 4x average-pool downsampling) with Degrade Video; SDEdit
restoration of it (CFGGuider cfg 3, euler, ``--steps`` steps at denoise 0.6, frames as one batch) unguided, with
``method`` gdp and with ddnm. One timed run each (after one untimed warm-up run of the plain sampler); seconds per
step and the ratio to the unguided step are printed, with peak memory (``_bench.peak_memory``, separate calls).

gdp adds one decode plus the decoder's backward pass (about two more decodes) per model call, ddnm one decode and one
encode; with the tiny UNet the VAE dominates, so the ratios here are an upper bound of what a real SD1.5 UNet shows.

    python benchmarks/bench_restoration.py [--frames 16] [--latent 64] [--steps 4] [--chunk 4] [--operator downsample_avgpool]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import format_bytes, peak_memory, print_table
from video_enhance_kit.host import (
    ComfyHost,
    describe_missing_comfyui,
    find_comfyui,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--latent", type=int, default=64, help="latent side (frames are 8x that)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--chunk", type=int, default=4, help="frames per VAE pass")
    p.add_argument("--operator", default="downsample_avgpool")
    p.add_argument("--memory", action="store_true", help="also measure peak memory (one more run each)")
    return p.parse_args(argv)


class Restorer:
    """The tiny SD1.5 model, the degraded clip, its start latent and the SDEdit parts."""

    def __init__(self, host, args):
        self.run, self.args = host.run_node, args
        size = 8 * args.latent
        g = torch.Generator().manual_seed(0)
        low = torch.rand(args.frames, 3, size // 16, size // 16, generator=g)
        clip = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        self.model, text, self.vae = self.run("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
        self.pos, = self.run("CLIPTextEncode", clip=text, text="a sharp photo")
        self.neg, = self.run("CLIPTextEncode", clip=text, text="blurry")
        self.params = {"operator": args.operator, "factor": 4, "blur_sigma": 1.6, "noise_sigma": 0.0, "light_scale": 0.25,
                       "light_offset": 0.0}
        self.degraded, self.mask = self.run("VEK_DegradeVideo", images=clip.movedim(1, -1).contiguous(), seed=0, **self.params)
        self.latent, = self.run("VAEEncode", pixels=clip.movedim(1, -1).contiguous(), vae=self.vae)
        self.sigmas, = self.run("BasicScheduler", model=self.model, scheduler="normal", steps=args.steps, denoise=0.6)
        self.sampler, = self.run("KSamplerSelect", sampler_name="euler")

    def restore(self, method: str | None):
        guider, = self.run("CFGGuider", model=self.model, positive=self.pos, negative=self.neg, cfg=3.0)
        if method is not None:
            extra = {"mask": self.mask} if self.args.operator == "inpaint" else {}
            guider, = self.run("VEK_DegradationConsistencyGuider", guider=guider, vae=self.vae, degraded=self.degraded,
                               blind_light=True, method=method, scale=1.0, start=0.0, end=1.0, chunk=self.args.chunk,
                               **self.params, **extra)
        noise, = self.run("RandomNoise", noise_seed=7)
        return self.run("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=self.sampler, sigmas=self.sigmas,
                        latent_image=self.latent)[0]


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    if find_comfyui() is None:
        sys.exit(describe_missing_comfyui())
    r = Restorer(ComfyHost.start(tiny_models=True), args)
    r.restore(None)  # warm-up: model load, kernels
    rows, plain = [], None
    for label, method in (("unguided", None), ("gdp", "gdp"), ("ddnm", "ddnm")):
        t0 = time.perf_counter()
        r.restore(method)
        per_step = (time.perf_counter() - t0) / args.steps
        plain = per_step if method is None else plain
        row = {"method": label, "s/step": f"{per_step:.2f}", "ratio": f"{per_step / plain:.2f}"}
        if args.memory:
            row["peak"] = format_bytes(peak_memory(lambda m=method: r.restore(m)).bytes)
        rows.append(row)
        print(f"  {label}: {per_step:.2f} s/step", flush=True)
    print(f"\nCost per step: {args.frames} frames of {args.latent}x{args.latent} latents ({8 * args.latent} px), "
          f"tiny SD1.5 (random weights), {args.operator}, euler {args.steps} steps, chunk {args.chunk}, one run each")
    print_table(rows)


if __name__ == "__main__":
    main()
