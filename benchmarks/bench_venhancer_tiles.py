"""VEnhancer spatial tiles at the model-call level: accuracy against untiled, the seam, and peak memory vs output size.

Usage::

    python benchmarks/bench_venhancer_tiles.py                     # small random config, CPU, ~1 min
    python benchmarks/bench_venhancer_tiles.py --sizes 16 32 48 64 --tile 16 --overlap 4 --frames 8

Part 1 runs the faithful fast-mode sampler (14 steps, eta 0, cfg 1) on the small random config of
tests/test_venhancer_model.py, its denoiser built on ``samplers.venhancer_windows.windowed_prediction``: the
untiled plan (checked equal to ``samplers.venhancer.venhancer_sample``) and a tiled one, with windows on
(a clip of more than one window). It prints the relative RMS of tiled vs untiled (one model call and the
whole run) and the seam metric (mean step across tile borders / elsewhere) of both outputs.
Part 2: peak memory (CPU RSS, or CUDA allocated) and seconds of one windowed prediction per latent size,
tiles on and off, each in a fresh subprocess so memory a previous size left to the allocator does not hide
the peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from _bench import format_bytes, peak_memory, print_table
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.samplers import venhancer as S
from video_enhance_kit.samplers import venhancer_windows as W
from video_enhance_kit.samplers.venhancer_schedule import solver_sigmas

#: tests/test_venhancer_model.py's TINY config (one downsample, latent sides even)
SMALL = V.VEnhancerConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, head_dim=16,
                          context_dim=32, temporal_heads=2)


def build(device: str) -> V.VEnhancerUNet:
    """The small config with every zero-initialised layer given random weights (so every path contributes)."""
    torch.manual_seed(0)
    model = V.build_venhancer(SMALL).to(device)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_((torch.randn(p.shape, generator=gen) * 0.05).to(p))
    return model


def make_inputs(frames: int, h: int, w: int, device: str, interp: int = 1) -> S.VEnhancerInputs:
    keys = (frames - 1) // (interp + 1) + 1
    frames = (keys - 1) * (interp + 1) + 1
    g = torch.Generator().manual_seed(2)
    lat = torch.nn.functional.avg_pool3d(torch.randn(1, 4, frames, h, w, generator=g), (1, 3, 3), 1, (0, 1, 1)).to(device) * 3
    ctx = torch.randn(1, 7, SMALL.context_dim, generator=g).to(device)
    return S.VEnhancerInputs(lat, torch.tensor([S.make_mask_cond(keys, interp)], device=device), ctx, ctx, interp)


def x0_prediction(model, inputs: S.VEnhancerInputs, schedule, t: int):
    """predict(xs, conds) -> x0 = alpha_t xs - sigma_t v at timestep t (cfg 1), for windowed_prediction."""
    dev = inputs.latents.device
    a, s = schedule.alphas.to(dev)[t], schedule.sigmas.to(dev)[t]  # as GuidedPrediction reads them

    def predict(xs, conds):
        tt = torch.full((xs.shape[0],), t, device=xs.device, dtype=torch.long)
        return a * xs - s * model(xs, tt, inputs.context, **conds)

    return predict


def sample(model, inputs: S.VEnhancerInputs, plan: W.WindowPlan) -> torch.Tensor:
    """The faithful fast-mode run (eta 0) with the denoiser built on windowed_prediction."""
    schedule = S.VEnhancerSchedule.official()
    lat = inputs.latents
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(3)).to(lat)
    hint_noise = torch.randn(lat[:, :, :: inputs.interp + 1].shape, generator=torch.Generator().manual_seed(4)).to(lat)
    conds = {**S.key_frame_conditions(schedule, inputs, 200, 8.0, hint_noise, None), "mask_cond": inputs.mask_cond}
    sigmas = solver_sigmas(schedule, "fast", 15, S.T_START)
    steps = iter(schedule.model_timesteps(sigmas[:-1]))

    def denoise(x, sigma):
        xt = x * (1 / (sigma**2 + 1.0) ** 0.5)
        return W.windowed_prediction(x0_prediction(model, inputs, schedule, next(steps)), xt, plan, conds)

    x = schedule.diffuse(lat, S.T_START, noise)
    sigmas = sigmas.to(lat.device)
    with torch.no_grad():
        return S.sample_dpmpp_2m_sde(denoise, x * sigmas[0], sigmas, eta=0.0)


def reference(model, inputs: S.VEnhancerInputs, chunk_length: int) -> torch.Tensor:
    """samplers.venhancer.venhancer_sample with the same noise (the faithful path)."""
    lat = inputs.latents
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(3)).to(lat)
    hint_noise = torch.randn(lat[:, :, :: inputs.interp + 1].shape, generator=torch.Generator().manual_seed(4)).to(lat)
    with torch.no_grad():
        return S.venhancer_sample(model, inputs, cfg=1.0, eta=0.0, noise=noise, hint_noise=hint_noise, chunk_length=chunk_length)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).double().pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt())


def accuracy(args, device: str) -> list[dict]:
    """Part 1: tiled vs untiled on one clip with windows on; one call and the whole run; seams."""
    model = build(device)
    h, w = args.accuracy_size
    inputs = make_inputs(args.accuracy_frames, h, w, device)
    f = inputs.latents.shape[2]
    untiled = W.plan_windows(f, h, w, interp=inputs.interp, chunk_length=args.chunk)
    tiled = W.plan_windows(f, h, w, interp=inputs.interp, chunk_length=args.chunk, tile_size=args.tile, tile_overlap=args.overlap)
    schedule = S.VEnhancerSchedule.official()
    conds = {**S.key_frame_conditions(schedule, inputs, 200, 8.0, None, torch.Generator().manual_seed(4)), "mask_cond": inputs.mask_cond}
    xt = schedule.diffuse(inputs.latents, 500, torch.randn(inputs.latents.shape, generator=torch.Generator().manual_seed(5)).to(inputs.latents))
    with torch.no_grad():
        one = [W.windowed_prediction(x0_prediction(model, inputs, schedule, 500), xt, p, conds) for p in (untiled, tiled)]
    runs = [sample(model, inputs, p) for p in (untiled, tiled)]
    faithful = reference(model, inputs, args.chunk)
    print(f"\nuntiled windowed run equals venhancer_sample bit for bit: {torch.equal(runs[0], faithful)} "
          f"(max |diff| {float((runs[0] - faithful).abs().max()):.3g})")
    rows = []
    for name, (u, t) in (("one model call, t = 500", one), ("whole run, fast, eta 0", runs)):
        su, st = W.seam_error(u, tiled), W.seam_error(t, tiled)
        rows.append({"what": name, "rel RMS tiled vs untiled": f"{rel_rms(t, u):.4f}", "seam ratio tiled": f"{st.ratio:.3f}",
                     "seam ratio untiled (same lines)": f"{su.ratio:.3f}", "seam ratio of the difference": f"{W.seam_error(t - u, tiled).ratio:.3f}"})
    print(f"\nTiles: {f} frames, latent {h}x{w}, {len(untiled.windows)} windows, tile {args.tile} overlap {args.overlap} "
          f"({len(tiled.tiles)} tiles), small random config, {device}")
    print_table(rows)
    return rows


def one_size(size: int, tile: int | None, overlap: int, frames: int, device: str, threads: int) -> dict:
    """Peak memory and seconds of one windowed prediction on a size x size latent (tile None = untiled)."""
    torch.set_num_threads(threads)
    model = build(device)
    inputs = make_inputs(frames, size, size, device)
    f = inputs.latents.shape[2]
    plan = W.plan_windows(f, size, size, interp=inputs.interp, tile_size=tile if tile and tile < size else None, tile_overlap=overlap)
    schedule = S.VEnhancerSchedule.official()
    conds = {**S.key_frame_conditions(schedule, inputs, 200, 8.0, None, torch.Generator().manual_seed(4)), "mask_cond": inputs.mask_cond}
    predict = x0_prediction(model, inputs, schedule, 500)

    def run():
        with torch.no_grad():
            return W.windowed_prediction(predict, inputs.latents, plan, conds)

    peak = peak_memory(run, device=device)  # the first call in this process: nothing kept by the allocator yet
    t0 = time.perf_counter()
    run()
    return {"bytes": peak.bytes, "method": peak.method, "seconds": time.perf_counter() - t0, "tiles": len(plan.tiles), "frames": f}


def memory(args, device: str) -> list[dict]:
    """Part 2: one subprocess per size and tiles on/off."""
    rows = []
    for size in args.sizes:
        for label, tile in (("off", 0), (f"{args.tile}/{args.overlap}", args.tile)):
            cmd = [sys.executable, __file__, "--one", str(size), str(tile), "--overlap", str(args.overlap), "--frames", str(args.frames), "--device", device,
                   "--threads", str(args.threads)]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            rows.append({"latent": f"{size}x{size}", "output px": f"{8 * size}x{8 * size}", "tiles": label, "tile count": r["tiles"],
                         "peak memory": format_bytes(r["bytes"]), "peak bytes": r["bytes"], "seconds": f"{r['seconds']:.2f}"})
            print(rows[-1], flush=True)
    print(f"\nPeak memory of one windowed prediction vs output size, {r['frames']} frames, small random config, {device} ({r['method']})")
    print_table(rows)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 48, 64], help="latent sides of part 2 (even)")
    ap.add_argument("--tile", type=int, default=16, help="tile side in latent pixels")
    ap.add_argument("--overlap", type=int, default=4, help="tile overlap in latent pixels")
    ap.add_argument("--frames", type=int, default=9, help="frames of part 2")
    ap.add_argument("--accuracy-frames", type=int, default=25, help="frames of part 1 (more than one window)")
    ap.add_argument("--accuracy-size", default="24x32", help="latent HxW of part 1")
    ap.add_argument("--chunk", type=int, default=16, help="chunk_length of part 1")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a loaded machine oversubscribed by more is far slower)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--one", nargs=2, type=int, metavar=("SIZE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one[0], args.one[1] or None, args.overlap, args.frames, args.device, args.threads)))
        return
    args.accuracy_size = tuple(int(v) for v in args.accuracy_size.lower().split("x"))
    torch.set_num_threads(args.threads)
    if not args.skip_accuracy:
        accuracy(args, args.device)
    if not args.skip_memory:
        memory(args, args.device)


if __name__ == "__main__":
    main()
