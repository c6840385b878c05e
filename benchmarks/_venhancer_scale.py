"""bench_venhancer.py's scale sections (issue 13): memory vs output size and frames, fp8 vs fp16, weight memory, the cost
constant and the GPU run. The size sweep and the small random config are benchmarks/bench_venhancer_tiles.py's."""

from __future__ import annotations

import argparse
import time

import bench_venhancer_tiles as T
import torch
from _bench import format_bytes, peak_memory, print_table
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.samplers import venhancer as S
from video_enhance_kit.samplers import venhancer_windows as W
from video_enhance_kit.samplers.venhancer_window_fit import VALUES_PER_FRAME_PIXEL_CHANNEL
from video_enhance_kit.utils.memory import weight_bytes, weight_bytes_by_dtype
from video_enhance_kit.utils.metrics import relative_rms


def size_sweep(sizes, tile: int, overlap: int, frames: int, device: str, threads: int) -> list[dict]:
    """Peak memory vs output size, tiles on and off (bench_venhancer_tiles' part 2), with the issue's checks printed."""
    rows = T.memory(argparse.Namespace(sizes=sizes, tile=tile, overlap=overlap, frames=frames, threads=threads), device)
    tiled = [r["peak bytes"] for r in rows if r["tiles"] != "off"]
    untiled = [r["peak bytes"] for r in rows if r["tiles"] == "off"]
    spread = max(tiled[1:]) / min(tiled[1:]) - 1
    print(f"tiles on: peak from the second-smallest size on within {100 * spread:.1f} % (issue: <= 10 %); "
          f"tiles off: {untiled[0] / 2**20:.0f} -> {untiled[-1] / 2**20:.0f} MiB ({untiled[-1] / untiled[0]:.1f}x for {(sizes[-1] / sizes[0]) ** 2:.0f}x the area)")
    return rows


def cost_constant(sizes=(16, 32, 48), frames: int = 9, device: str = "cpu", threads: int = 1) -> float:
    """Measure the cost constant of samplers/venhancer_window_fit.py: fp32 values per frame x latent pixel x channel."""
    rows = []
    for size in sizes:
        r = T.json.loads(T.subprocess.run([T.sys.executable, T.__file__, "--one", str(size), "0", "--frames", str(frames), "--device", device,
                                           "--threads", str(threads)], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        per = r["bytes"] / (r["frames"] * size * size)
        rows.append({"latent": f"{size}x{size}", "frames": r["frames"], "peak above before": format_bytes(r["bytes"]), "bytes per frame x pixel": f"{per:.0f}",
                     "fp32 values per frame x pixel x channel": f"{per / 4 / T.SMALL.model_channels:.1f}"})
    print(f"\nCost of one model call (small config, width {T.SMALL.model_channels}, {device}); in the code: {VALUES_PER_FRAME_PIXEL_CHANNEL}")
    print_table(rows)
    return float(rows[-1]["fp32 values per frame x pixel x channel"])


def fp8_storage(model: torch.nn.Module, compute: torch.dtype) -> torch.nn.Module:
    """Weights stored in float8_e4m3fn (a plain cast, as ComfyUI's weight_dtype fp8 does), cast to ``compute`` per layer call."""
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        module._fp8 = {k: v.detach().to(torch.float8_e4m3fn) for k, v in own.items()}
        for k in own:
            delattr(module, k)
            setattr(module, k, None)

        def cast(m, _args):
            for k, v in m._fp8.items():
                setattr(m, k, v.to(compute))

        def drop(m, _args, _out):
            for k in m._fp8:
                setattr(m, k, None)

        module.register_forward_pre_hook(cast)
        module.register_forward_hook(drop)
    model.compute_dtype = compute
    return model


def fp8_vs_fp16(size: int = 24, frames: int = 9) -> dict:
    """Small config, one windowed prediction at t = 500: weights stored in fp16 vs fp8 (both computed in fp32 on CPU)."""
    inputs = T.make_inputs(frames, size, size, "cpu")
    schedule = S.VEnhancerSchedule.official()
    conds = {**S.key_frame_conditions(schedule, inputs, 200, 8.0, None, torch.Generator().manual_seed(4)), "mask_cond": inputs.mask_cond}
    plan = W.plan_windows(inputs.latents.shape[2], size, size, interp=inputs.interp)
    outs = {}
    for name in ("fp32", "fp16", "fp8"):
        model = T.build("cpu")
        if name == "fp16":
            model = model.half().float()
        elif name == "fp8":
            model = fp8_storage(model, torch.float32)
        with torch.no_grad():
            outs[name] = W.windowed_prediction(T.x0_prediction(model, inputs, schedule, 500), inputs.latents, plan, conds)
    row = {"what": f"one model call, {inputs.latents.shape[2]} frames {size}x{size}, t = 500",
           "rel RMS fp16 vs fp32": f"{float(relative_rms(outs['fp16'], outs['fp32'])):.2e}",
           "rel RMS fp8 vs fp16": f"{float(relative_rms(outs['fp8'], outs['fp16'])):.4f}"}
    print("\nfp8 (e4m3fn storage) vs fp16 storage, small random config (weights std ~0.02-0.05, compute fp32)")
    print_table([row])
    return row


def weight_memory() -> dict:
    """Weight memory of the official network built on meta: fp16 vs fp8 storage (no memory allocated)."""
    fp16 = V.build_venhancer(V.VEnhancerConfig(), device="meta", dtype=torch.float16)
    fp8 = V.build_venhancer(V.VEnhancerConfig(), device="meta", dtype=torch.float8_e4m3fn)
    row = {"network": "official VEnhancer (UNet + ControlNet), meta", "fp16": format_bytes(weight_bytes(fp16)), "fp8_e4m3fn": format_bytes(weight_bytes(fp8)),
           "ratio": f"{weight_bytes(fp8) / weight_bytes(fp16):.3f}", "fp8 by dtype": str({k: format_bytes(v) for k, v in weight_bytes_by_dtype(fp8).items()})}
    print("\nWeight memory")
    print_table([row])
    return row


#: The GPU section's outputs (HxW pixels) and frames; each run: one windowed prediction (32-frame windows, cfg 1).
GPU_SIZES = {"720p": (720, 1280), "1080p": (1088, 1920)}
GPU_FRAMES = (32, 64)


def stored_bytes(model: torch.nn.Module) -> int:
    """Weight bytes as stored (fp8 copies of fp8_storage included)."""
    return weight_bytes(model) + sum(v.numel() * v.element_size() for m in model.modules() for v in getattr(m, "_fp8", {}).values())


def gpu_run(weights: str, size: tuple[int, int], frames: int, tile: int | None, cfg: V.VEnhancerConfig | None = None, device: str = "cuda") -> dict:
    """Peak memory and seconds of one windowed prediction (t = 500, cfg 1) of the random-weight network (official: cfg None)."""
    cfg = cfg or V.VEnhancerConfig()
    compute = torch.float16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    model = V.build_venhancer(cfg, device=device, dtype=compute)
    if weights == "fp8":
        model = fp8_storage(model, compute)
    h, w = size[0] // 8, size[1] // 8
    inputs = T.make_inputs(frames, h, w, device)
    ctx = torch.randn(1, 77, cfg.context_dim, device=device)
    schedule = S.VEnhancerSchedule.official()
    conds = {**S.key_frame_conditions(schedule, inputs, 200, 8.0, None, torch.Generator().manual_seed(4)), "mask_cond": inputs.mask_cond}
    f = inputs.latents.shape[2]
    plan = W.plan_windows(f, h, w, interp=1, chunk_length=32, tile_size=tile, tile_overlap=min(8, (tile or 32) // 4))
    t = torch.full((1,), 500, device=device, dtype=torch.long)

    def run():
        with torch.no_grad():
            return W.windowed_prediction(lambda xs, c: model(xs, t.expand(xs.shape[0]), ctx, **c), inputs.latents, plan, conds)

    t0 = time.perf_counter()
    peak = peak_memory(run, device=device)
    window = max(b - a for a, b in plan.windows)
    pixels = max((b - a) * (d - c) for a, b, c, d in plan.tiles)
    return {"weights": weights, "output": f"{size[0]}x{size[1]}", "frames": f, "tiles": tile or "off", "windows": len(plan.windows),
            "weights memory": format_bytes(stored_bytes(model)), "peak above weights": format_bytes(peak.bytes),
            "seconds": f"{time.perf_counter() - t0:.1f}", "per frame x px x ch": f"{peak.bytes / (window * pixels * cfg.model_channels):.1f} B"}


def gpu_section(tile: int = 64) -> list[dict]:
    """Full size, random weights, fp16 and fp8, 720p and 1080p, 32 and 64 frames, tiles off and on: one command."""
    if not torch.cuda.is_available():
        print("--gpu: no CUDA device here; run it on a machine with one")
        return []
    rows = []
    for weights in ("fp16", "fp8"):
        for size in GPU_SIZES.values():
            for frames in GPU_FRAMES:
                for t in (None, tile):
                    try:
                        rows.append(gpu_run(weights, size, frames, t))
                    except torch.cuda.OutOfMemoryError:
                        rows.append({"weights": weights, "output": f"{size[0]}x{size[1]}", "frames": frames, "tiles": t or "off", "peak above weights": "OOM"})
                    print(rows[-1], flush=True)
                    torch.cuda.empty_cache()
    print(f"\nFull-size VEnhancer, random weights, one windowed prediction (cfg 1), {torch.cuda.get_device_name()}")
    print_table(rows)
    return rows
