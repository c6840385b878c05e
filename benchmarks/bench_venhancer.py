"""VEnhancer benchmark: peak memory and time of one sampling run versus frames, and SDPA versus naive attention.

Usage::

    python benchmarks/bench_venhancer.py                  # small config, frames 8 32 64 96, CPU or CUDA
    python benchmarks/bench_venhancer.py --frames 8 32 --size 18x32 --device cuda --official-width

Part 1 runs the whole fast-mode sampler (14 steps, cfg 1 so one call per window and step) on random
weights, each frame count in a fresh subprocess (so the CPU RSS peak is not hidden by memory an earlier
run left to the allocator), with the official 32-frame windows and, for contrast, with one window
holding every frame. Memory should stay flat beyond one window with chunking and grow without it.
Part 2 times one network forward with torch SDPA against a naive softmax(QK^T/sqrt(d))V.

``--native`` instead runs real ComfyUI in-process (COMFYUI_PATH) with the tiny VEnhancer and compares the native
pieces (VEnhancer Conditioning's latent, VEnhancer Sigmas, CFGGuider + dpmpp_2m_sde through SamplerCustomAdvanced)
with the faithful sampler (samplers/venhancer.py) on the same network, conds, noise and settings: time ratio,
peak memory of each and the relative difference of their outputs, in one run::

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_venhancer.py --native [--frames 9] [--size 32x40] [--cfg 7.5]

Scale (issue 13; sections in benchmarks/_venhancer_scale.py, the size sweep is bench_venhancer_tiles.py's)::

    python benchmarks/bench_venhancer.py --scale          # CPU, one run: memory vs output size (tiles on/off) and vs
                                                          # frames (windows on/off), fp8 vs fp16 outputs, weight memory
    python benchmarks/bench_venhancer.py --cost           # the cost constant of samplers/venhancer_window_fit.py
    python benchmarks/bench_venhancer.py --gpu            # CUDA: full-size random weights, fp16 / fp8, 720p / 1080p, 32 / 64 frames
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from _bench import compare, format_bytes, peak_memory, print_table
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.samplers import venhancer as S


def config(official_width: bool) -> V.VEnhancerConfig:
    if official_width:  # the comparison config: width 320, (1, 1, 1, 4), one res block, context 1024
        return V.VEnhancerConfig(model_channels=320, channel_mult=(1, 1, 1, 4), num_res_blocks=1, context_dim=1024)
    return V.VEnhancerConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=2, head_dim=32, context_dim=64, temporal_heads=2)


def build(cfg, device, dtype):
    torch.manual_seed(0)
    model = V.build_venhancer(cfg, dtype=dtype).to(device)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    return model


def one_run(frames: int, size: tuple[int, int], chunk: int, device: str, official_width: bool, mode: str = "fast", steps: int = 15) -> dict:
    """Peak memory and seconds of one sampling run of ``frames`` frames (interp 1: half are key frames)."""
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    cfg = config(official_width)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = build(cfg, device, dtype)
    g = torch.Generator().manual_seed(0)
    h, w = size
    interp = 1
    keys = (frames - 1) // (interp + 1) + 1
    frames = (keys - 1) * (interp + 1) + 1
    lat = torch.randn(1, cfg.in_channels, frames, h, w, generator=g).to(device)
    ctx = torch.randn(1, 77, cfg.context_dim, generator=g).to(device)
    inputs = S.VEnhancerInputs(lat, torch.tensor([S.make_mask_cond(keys, interp)], device=device), ctx, ctx, interp)

    def run():
        with torch.no_grad():
            return S.venhancer_sample(model, inputs, cfg=1.0, mode=mode, steps=steps, chunk_length=chunk, generator=torch.Generator().manual_seed(1))

    t0 = time.perf_counter()
    peak = peak_memory(run, device=device)
    seconds = time.perf_counter() - t0
    return {"frames": frames, "bytes": peak.bytes, "method": peak.method, "seconds": seconds}


def attention_compare(device: str, official_width: bool, frames: int, size: tuple[int, int]):
    cfg = config(official_width)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = build(cfg, device, dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.in_channels, frames, *size, generator=g).to(device)
    ctx = torch.randn(1, 77, cfg.context_dim, generator=g).to(device)
    t = torch.tensor([500], device=device)

    def forward(kernel):
        def fn():
            V.set_attention_kernel(kernel)
            try:
                with torch.no_grad():
                    return model(x, t, ctx)
            finally:
                V.set_attention_kernel("sdpa")
        return fn

    return compare(forward("sdpa"), forward("naive"), warmup=1, repeats=3, label=f"forward, {frames} frames {size[0]}x{size[1]} latent: SDPA vs naive", device=device, show=False)


def native_pieces(host, frames: int, size: tuple[int, int], mode: str, steps: int, seed: int = 1) -> dict:
    """The tiny VEnhancer MODEL, prompts, VEnhancer Conditioning's outputs and VEnhancer Sigmas for a random clip."""
    (model,) = host.run_node("VEK_VEnhancerModelLoader", ckpt_name="vek-tiny-venhancer.safetensors", dtype="fp32")
    (vae,) = host.run_node("VAELoader", vae_name="vek-tiny-taesd.safetensors")
    (clip,) = host.run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="stable_diffusion")
    (pos,) = host.run_node("CLIPTextEncode", clip=clip, text="a sharp detailed video")
    (neg,) = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    images = torch.rand(frames, *size, 3, generator=torch.Generator().manual_seed(0))
    pos, neg, latent = host.run_node("VEK_VEnhancerConditioning", positive=pos, negative=neg, vae=vae, images=images, fps=8.0, up_scale=1.0,
                                     resolution_rule="exact", target_fps=0.0, frame_interpolation=1, noise_aug=200, s_cond=8.0,
                                     padding="minimal", seed=seed)
    (sigmas,) = host.run_node("VEK_VEnhancerSigmas", solver_mode=mode, steps=steps, start_timestep=899)
    return {"model": model, "positive": pos, "negative": neg, "latent": latent, "sigmas": sigmas, "seed": seed}


def native_runs(host, p: dict, cfg: float, mode: str, steps: int):
    """Zero-argument callables: the native graph and the faithful sampler (both return scaled x0 latents)."""
    import functools

    native_model = host.pack_module("nodes._venhancer_model")

    def native():
        (noise,) = host.run_node("RandomNoise", noise_seed=p["seed"])
        (guider,) = host.run_node("CFGGuider", model=p["model"], positive=p["positive"], negative=p["negative"], cfg=cfg)
        (sampler,) = host.run_node("KSamplerSelect", sampler_name="dpmpp_2m_sde")
        out, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=p["sigmas"], latent_image=p["latent"])
        return out["samples"] * S.LATENT_SCALE

    def faithful():
        native_model.mm.load_models_gpu([p["model"]])
        entry = p["positive"][0][1]["venhancer"]
        lat = p["latent"]["samples"] * S.LATENT_SCALE
        inputs = S.VEnhancerInputs(lat, entry["mask_cond"], p["positive"][0][0], p["negative"][0][0], entry["interp"])
        ns = native_model.brownian_noise(lat, p["sigmas"], p["seed"])
        net = functools.partial(V.VEnhancerUNet.forward, p["model"].model.diffusion_model)
        with torch.no_grad():
            return S.venhancer_sample(net, inputs, cfg=cfg, mode=mode, steps=steps, generator=torch.Generator().manual_seed(p["seed"]), noise_sampler=ns)

    return native, faithful


def native_main(args, size) -> None:
    from video_enhance_kit.host import ComfyHost, describe_missing_comfyui, find_comfyui

    if find_comfyui() is None:
        print(describe_missing_comfyui())
        return
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    host = ComfyHost.start(tiny_models=True)
    frames = args.frames[0] if args.frames else 9
    pieces = native_pieces(host, frames, size, args.mode, args.steps)
    native, faithful = native_runs(host, pieces, args.cfg, args.mode, args.steps)
    a, b = native(), faithful()
    diff = float((a - b).abs().max() / b.abs().max())
    result = compare(native, faithful, warmup=1, repeats=args.repeats, label="native pieces vs faithful sampler", show=False)
    shape = tuple(pieces["latent"]["samples"].shape)
    print(f"\nVEnhancer native vs faithful: tiny VEnhancer, latent {shape}, {args.mode} ({len(pieces['sigmas']) - 1} steps), cfg {args.cfg}, CPU")
    print(f"max |native - faithful| / max |faithful| = {diff:.2e}")
    print_table([result.row()])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 32, 64, 96])
    ap.add_argument("--size", default="18x16", help="latent HxW (H = 2 mod 2^levels)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--official-width", action="store_true", help="width 320, (1,1,1,4), context 1024 instead of the small config")
    ap.add_argument("--mode", default="fast", choices=["fast", "normal"], help="solver mode (fast: 14 calls per window)")
    ap.add_argument("--steps", type=int, default=15, help="normal-mode steps (e.g. 2 for a quick CPU run)")
    ap.add_argument("--no-unchunked", action="store_true", help="skip the single-window contrast runs")
    ap.add_argument("--attention-frames", type=int, default=32, help="frames of the SDPA vs naive forward")
    ap.add_argument("--native", action="store_true", help="native pieces in ComfyUI vs the faithful sampler (tiny model; --frames[0] key frames, --size in pixels)")
    ap.add_argument("--cfg", type=float, default=7.5, help="guidance scale of the --native comparison")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of the --native comparison")
    ap.add_argument("--scale", action="store_true", help="issue 13's CPU run: memory vs output size (tiles on/off) and frames (windows on/off), fp8, weight memory")
    ap.add_argument("--cost", action="store_true", help="measure the cost per frame x latent pixel of the windows' auto fit")
    ap.add_argument("--gpu", action="store_true", help="full-size random-weight network on CUDA (fp16 / fp8, 720p / 1080p, 32 / 64 frames)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32, 48], help="--scale: latent sides of the size sweep")
    ap.add_argument("--tile", type=int, default=16, help="--scale: tile side (latent pixels)")
    ap.add_argument("--overlap", type=int, default=4, help="--scale: tile overlap (latent pixels)")
    ap.add_argument("--size-frames", type=int, default=9, help="--scale: frames of the size sweep")
    ap.add_argument("--threads", type=int, default=1, help="--scale: torch CPU threads of the size sweep")
    ap.add_argument("--one", nargs=2, type=int, metavar=("FRAMES", "CHUNK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    if args.native:
        native_main(args, size)
        return
    if args.one:
        print(json.dumps(one_run(args.one[0], size, args.one[1], args.device, args.official_width, args.mode, args.steps)))
        return

    if args.scale or args.cost or args.gpu:
        scale_main(args)
        return
    frames_rows(args)
    result = attention_compare(args.device, args.official_width, args.attention_frames, size)
    print("\nAttention: torch SDPA (fn) vs naive softmax(QK^T)V (baseline); ratio < 1 = SDPA faster")
    print_table([result.row()])


def scale_main(args) -> None:
    import _venhancer_scale as X

    if args.cost:
        X.cost_constant(device=args.device)
    if args.scale:
        X.size_sweep(args.sizes, args.tile, args.overlap, args.size_frames, args.device, args.threads)
        frames_rows(args)
        X.fp8_vs_fp16()
        X.weight_memory()
    if args.gpu:
        X.gpu_section()


def frames_rows(args) -> dict:
    """Peak memory and time vs frames, 32-frame windows and one window, each run in a fresh subprocess."""
    rows = []
    for frames in args.frames:
        modes = [("32-frame windows", 32)] + ([] if args.no_unchunked else [("one window", max(frames, 32))])
        for name, chunk in modes:
            cmd = [sys.executable, __file__, "--one", str(frames), str(chunk), "--size", args.size, "--device", args.device,
                   "--mode", args.mode, "--steps", str(args.steps)]
            cmd += ["--official-width"] if args.official_width else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            windows = S.make_chunks(r["frames"], 1, chunk) or [(0, r["frames"])]
            rows.append({"frames": r["frames"], "mode": name, "windows": len(windows), "peak memory": format_bytes(r["bytes"]),
                         "seconds": f"{r['seconds']:.1f}"})
            print(rows[-1], flush=True)
    calls = len(S.model_call_timesteps(args.mode, args.steps))
    print(f"\nVEnhancer sampling ({args.mode}, {calls} calls per window), cfg 1, {'official-width' if args.official_width else 'small'} config, latent {args.size}, {args.device} ({r['method']})")
    print_table(rows)
    return r


if __name__ == "__main__":
    main()
