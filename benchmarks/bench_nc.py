"""Noise Calibration cost: NC-SDEdit Refine versus plain SDEdit (KSampler) at the same steps, in one process.

Runs real ComfyUI in-process (COMFYUI_PATH) with the pack's tiny random-weight models (no downloads):
``VEK_NCSDEditRefine`` with N calibration iterations against the stock ``KSampler`` with the same model,
prompts, latent, seed, sampler, scheduler, steps (default 30) and denoise (default 0.6, the paper's
t0 = 600/1000). Prints:

- the measured time ratio NC / plain and the theoretical one (steps + N) / steps (each guided calibration
  call costs one CFG model call, like a sampling step; "cond only" calls cost about half of that);
- the FFT filter's cost per calibration iteration (one low/high split of x0_hat) as a percentage of one
  sampling step (target: under 2 %).

Usage::

    python benchmarks/bench_nc.py [--family sd15|wan] [--steps 30] [--denoise 0.6] [--iterations 3]
                                  [--frames 2] [--size 16] [--repeats 3] [--calibrate-with guided|cond]

``--size`` is the latent height = width (latent pixels: an SD1.5 image is 8x larger). The tiny models make
absolute times meaningless; the ratios are what this measures. Keep sizes small on a shared CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _bench import compare, print_table


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=["sd15", "wan"], default="sd15")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--denoise", type=float, default=0.6)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--calibrate-with", choices=["guided", "cond"], default="guided")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def sampler_inputs(host, args) -> tuple[dict, torch.Tensor]:
    """KSampler inputs on the tiny model of ``args.family`` (both runs share them), and the latent."""
    gen = torch.Generator().manual_seed(0)
    if args.family == "sd15":
        model, clip, _ = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
        latent = torch.randn(args.frames, 4, args.size, args.size, generator=gen)
    else:
        model, = host.run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
        clip, = host.run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="sd3")
        latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, args.size, args.size, generator=gen)
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp detailed video")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    common = {"model": model, "positive": pos, "negative": neg, "latent_image": {"samples": latent}, "seed": 1,
              "steps": args.steps, "cfg": args.cfg, "sampler_name": "ddim", "scheduler": "normal", "denoise": args.denoise}
    return common, latent


def time_calibration(host) -> list[float]:
    """Time the calibration itself inside the node (wrapping the sampler's calibration method)."""
    nc_module = host.pack_module("nodes.noise_calibration")
    calibration_times = []
    original = nc_module.Calibrator.calibrate

    def timed_calibration(self, *a, **k):
        start = time.perf_counter()
        out = original(self, *a, **k)
        calibration_times.append(time.perf_counter() - start)
        return out

    nc_module.Calibrator.calibrate = timed_calibration
    return calibration_times


def filter_times(fft, latent: torch.Tensor) -> tuple[float, float]:
    """Median seconds of one low/high split of ``latent`` and of a [16, 4, 64, 64] latent (16 SD1.5 frames at 512 px)."""
    x0 = latent.float()
    for _ in range(3):
        fft.split_frequencies(x0, 1.0)
    times = []
    for _ in range(21):
        t = time.perf_counter()
        fft.split_frequencies(x0, 1.0)
        times.append(time.perf_counter() - t)
    big = torch.randn(16, 4, 64, 64)
    big_times = []
    for _ in range(5):
        t = time.perf_counter()
        fft.split_frequencies(big, 1.0)
        big_times.append(time.perf_counter() - t)
    return statistics.median(times), statistics.median(big_times)


def print_figures(args, res, calibration_s: float, filter_s: float, big_s: float) -> None:
    theoretical = (args.steps + args.iterations) / args.steps
    step_s = res.baseline_median / args.steps  # one sampling step (model call + sampler update)
    print()
    print_table([
        {"figure": "time ratio NC / plain (measured)", "value": f"{res.ratio:.3f}"},
        {"figure": "time ratio (steps + N) / steps (theoretical)", "value": f"{theoretical:.3f}"},
        {"figure": "one sampling step (ms)", "value": f"{1e3 * step_s:.2f}"},
        {"figure": "calibration inside the node (ms)", "value": f"{1e3 * calibration_s:.2f}"},
        {"figure": "calibration / (N x step)", "value": f"{calibration_s / (args.iterations * step_s):.3f}" if args.iterations else "-"},
        {"figure": "filter per calibration iteration (ms)", "value": f"{1e3 * filter_s:.3f}"},
        {"figure": "filter / step (target < 2 %)", "value": f"{100 * filter_s / step_s:.3f} %"},
        {"figure": "filter on a [16, 4, 64, 64] latent (ms)", "value": f"{1e3 * big_s:.2f}"},
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    from video_enhance_kit.host import ComfyHost, describe_missing_comfyui, find_comfyui

    if find_comfyui() is None:
        print(describe_missing_comfyui())
        return 2
    host = ComfyHost.start(tiny_models=True)
    common, latent = sampler_inputs(host, args)
    mode = "guided (cfg)" if args.calibrate_with == "guided" else "cond only (paper)"
    calibration_times = time_calibration(host)

    def plain():
        return host.run_node("KSampler", **common)

    def nc():
        return host.run_node("VEK_NCSDEditRefine", **common, iterations=args.iterations, cutoff=1.0,
                             mask="ideal_reference", dims="2d (per frame)", calibrate_with=mode)

    print(f"family {args.family}, latent {tuple(latent.shape)}, {args.steps} steps, denoise {args.denoise}, "
          f"N = {args.iterations} ({mode}), cfg {args.cfg}, threads {args.threads}")
    res = compare(nc, plain, warmup=1, repeats=args.repeats, label=f"NC-SDEdit N={args.iterations} vs SDEdit", memory=False)
    filter_s, big_s = filter_times(host.pack_module("utils.fft"), latent)
    print_figures(args, res, statistics.median(calibration_times), filter_s, big_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
