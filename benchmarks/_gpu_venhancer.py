"""gpu_check part ``venhancer``: seconds per model call and peak memory of the VEnhancer sampler with windows (no ComfyUI)."""

from __future__ import annotations

import time

import torch
from _bench import peak_memory

#: The toy network: two levels of width 32 (the official one: VEnhancerConfig(), 2.0 B parameters).
TOY_CONFIG = {"model_channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": 1, "head_dim": 16,
              "context_dim": 32, "temporal_heads": 2}


def build_network(toy: bool, device: str, dtype: torch.dtype):
    """The VEnhancer UNet + ControlNet (official config, or the toy one) with random weights, zero layers filled too."""
    from video_enhance_kit.models import venhancer as V

    cfg = V.VEnhancerConfig(**TOY_CONFIG) if toy else V.VEnhancerConfig()
    torch.manual_seed(0)
    model = V.build_venhancer(cfg, device=device, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():  # zero-initialised output convs: random too, so no path is trivially zero
                p.normal_(0, 0.02)
    return model


def sampler_inputs(cfg, frames: int, size: tuple[int, int], device: str, interp: int = 0):
    """Random latents [1, 4, frames, h, w] (fp32, as the node passes them), key-frame mask and text contexts."""
    from video_enhance_kit.samplers import venhancer as S

    g = torch.Generator().manual_seed(frames)
    lat = torch.randn(1, cfg.in_channels, frames, *size, generator=g).to(device)
    keys = (frames - 1) // (interp + 1) + 1
    mask = torch.tensor([S.make_mask_cond(keys, interp)], device=device)
    ctx = torch.randn(1, 77, cfg.context_dim, generator=g).to(device)
    return S.VEnhancerInputs(lat, mask, ctx, torch.zeros_like(ctx), interp)


def timed_run(model, inputs, sizes, device: str) -> dict:
    """One sampling run: seconds, model calls, peak memory (above what was allocated before), finiteness."""
    from video_enhance_kit.samplers import venhancer as S

    calls = [0]
    result = {}

    def count():
        calls[0] += 1

    def run():
        with torch.no_grad():
            out = S.venhancer_sample(model, inputs, cfg=sizes.cfg, mode="normal", steps=sizes.ve_steps, chunk_length=sizes.ve_chunk,
                                     generator=torch.Generator().manual_seed(1), on_model_call=count)
        result["finite"] = bool(torch.isfinite(out).all())
        return out

    start = time.perf_counter()
    peak = peak_memory(run, device=device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "calls": calls[0], "peak": peak.bytes, "finite": result["finite"]}


def venhancer_rows(sizes, device: str) -> list[dict]:
    """Rows ``venhancer``: per frame count, seconds per model call and peak memory, windows on (``ve_chunk`` frames)."""
    from video_enhance_kit.samplers import venhancer as S

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = build_network(sizes.toy, device, dtype)
    h, w = sizes.ve_latent
    warm = sampler_inputs(model.cfg, min(sizes.ve_frames), sizes.ve_latent, device)
    timed_run(model, warm, sizes, device)  # untimed: kernels, allocator, cuDNN plans
    rows = []
    for frames in sizes.ve_frames:
        r = timed_run(model, sampler_inputs(model.cfg, frames, sizes.ve_latent, device), sizes, device)
        windows = len(S.make_chunks(frames, 0, sizes.ve_chunk) or [(0, frames)])
        rows.append({
            "check": "venhancer", "case": f"{8 * h}x{8 * w} output, {sizes.ve_chunk}-frame windows, cfg {sizes.cfg}, {sizes.ve_steps} steps",
            "frames": frames, "ours_s": r["seconds"], "ours_peak_bytes": r["peak"], "calls": r["calls"],
            "s_per_call": r["seconds"] / max(1, r["calls"]), "windows": windows, "rounds": 1, "finite": r["finite"],
        })
        print(rows[-1], flush=True)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows
