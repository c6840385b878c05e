"""ZVRD sampler-side tools: time per step versus the plain sampler, and a Table-5-style ablation.

What it runs (real ComfyUI in-process with the tiny random-weight SD1.5-family model, so it needs
COMFYUI_PATH or the pack inside ComfyUI/custom_nodes):

- a synthetic moving video: ``--frames`` (default 16) frames of ``--size`` px of a smooth random texture
  panning right by ``--shift`` px per frame (so the true backward flow is exactly ``-shift`` and the
  uncovered left border is the only occlusion), encoded with the model's VAE;
- frame-by-frame SDEdit refinement of it (frames as one batch; CFGGuider cfg 3, euler_ancestral,
  ``--steps`` steps at ``--denoise``), with the ZVRD components added one by one:
  baseline, +guidance (Temporal Consistency Guider with the true flow, node defaults),
  +noise sharing (Shared Noise + Shared Noise Sampler with the flow), +early stop (Early Stop Sampler,
  ``--stop-fraction`` 0.75: 6 of 8 steps), +attention (SLR Temporal Attention, when that node is installed);
  and each component alone;
- metrics on the decoded output: warping error WE x100 (Lai et al., with the true flow and mask, as
  ZVRD's tables print it: lower = less flicker) and MSE_l x100 (low-frequency MSE against the input
  video, NC paper, cutoff 0.5: lower = content kept); SF = spatial frequency (higher = more detail);
- time per step of each component against the plain sampler in the same process (``_bench.compare``,
  alternating rounds, median ratio).

The model has random weights: its "enhancement" is noise, so the ablation shows what each tool does to
flicker and to detail of what the sampler produces, not restoration quality.

    python benchmarks/bench_zvrd.py [--frames 16] [--size 64] [--steps 8] [--denoise 0.6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import compare, print_table
from video_enhance_kit.host import (
    ComfyHost,
    describe_missing_comfyui,
    find_comfyui,
)
from video_enhance_kit.utils.flow import VideoFlow
from video_enhance_kit.utils.metrics import mse_low, spatial_frequency, warping_error

VP = "variance_preserving"


def moving_video(frames: int, size: int, shift: int, seed: int = 0):
    """IMAGE ``[F, S, S, 3]`` of a smooth texture panning right, and its exact VideoFlow."""
    g = torch.Generator().manual_seed(seed)
    width = size + shift * (frames - 1)
    tex = torch.rand(1, 3, size // 4, width // 4 + 1, generator=g)
    tex = torch.nn.functional.interpolate(tex, size=(size, width + 4), mode="bicubic", align_corners=False).clamp(0, 1)
    clip = torch.cat([tex[..., width - size - i * shift: width - i * shift] for i in range(frames)])
    fwd = torch.zeros(frames - 1, 2, size, size)
    fwd[:, 0] = shift
    bwd = -fwd
    valid_b = torch.ones(frames - 1, 1, size, size)
    valid_b[..., :shift] = 0  # uncovered at the left border
    valid_f = torch.ones(frames - 1, 1, size, size)
    valid_f[..., size - shift:] = 0
    return clip.movedim(1, -1).contiguous(), VideoFlow(fwd, bwd, valid_f, valid_b)


def core_overhead(frames: int, sizes=(8, 64), rounds: int = 5) -> None:
    """Milliseconds one guidance step and one shared-noise draw add per sampling step (no model, no host)."""
    import time

    from video_enhance_kit.samplers.guidance import (
        GuidanceSettings,
        TemporalConsistencyGuidance,
    )
    from video_enhance_kit.samplers.shared_noise import shared_step_noise

    print(f"\nCore cost per step ({frames} frames x 4 latent channels, median of {rounds}; the model call is not included)")
    for h in sizes:
        x = torch.randn(frames, 4, h, h)
        back = torch.zeros(frames - 1, 2, h, h)
        back[:, 0] = -1.0
        mask = torch.ones(frames - 1, 1, h, h)
        guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.2, gamma=0.0), flow=(back, mask))
        for name, fn in (("guidance step", lambda g=guide, x=x: g(x, 0.1)),
                         ("shared noise (flow blend)", lambda x=x, b=back, m=mask: shared_step_noise(x, 1.0, (b, m), 0.2))):
            fn()
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            times.sort()
            print(f"  {name:<26} {h}x{h} latents: {1000 * times[len(times) // 2]:.1f} ms")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--shift", type=int, default=8, help="pan in px per frame (8 = one latent cell)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--denoise", type=float, default=0.6)
    p.add_argument("--repeats", type=int, default=3, help="timing rounds per component (0 = skip timing)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=0.2, help="guidance_scale s")
    p.add_argument("--pixel-start", type=float, default=0.7, help="pixel_start (T_TC as a fraction of the schedule)")
    p.add_argument("--share", type=float, default=1.0, help="share_weight of Shared Noise / Shared Noise Sampler")
    p.add_argument("--blend-lambda", type=float, default=0.2, help="Eq. 11 lambda")
    p.add_argument("--stop-fraction", type=float, default=0.75, help="early stop: fraction of the steps run")
    p.add_argument("--only", default="", help="comma-separated row labels to run (default all)")
    return p.parse_args(argv)


class Refiner:
    """SDEdit refinement of the moving video on the tiny SD1.5 model, with the ZVRD components switched on or off."""

    def __init__(self, host, args):
        self.args, self.run = args, host.run_node
        run = self.run
        self.video, flow = moving_video(args.frames, args.size, args.shift)
        self.flow = host.pack_module("utils.flow").VideoFlow(flow.forward, flow.backward, flow.valid_forward, flow.valid_backward)
        self.model, clip, self.vae = run("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
        self.pos, = run("CLIPTextEncode", clip=clip, text="a sharp, detailed photo")
        self.neg, = run("CLIPTextEncode", clip=clip, text="blurry, noisy")
        self.latent, = run("VAEEncode", pixels=self.video, vae=self.vae)
        self.sigmas, = run("BasicScheduler", model=self.model, scheduler="normal", steps=args.steps, denoise=args.denoise)
        self.base_sampler, = run("KSamplerSelect", sampler_name="euler_ancestral")
        self.has_attention = "VEK_SLRTemporalAttention" in host.pack_node_ids()

    def _sampler(self, sharing: bool, early: bool):
        args, run, sampler = self.args, self.run, self.base_sampler
        if sharing:
            noise, = run("VEK_SharedNoise", noise_seed=args.seed, share_weight=args.share, blend_lambda=args.blend_lambda,
                         blend_mode=VP, flow=self.flow)
            sampler, = run("VEK_SharedNoiseSampler", sampler=sampler, share_weight=args.share, blend_lambda=args.blend_lambda,
                           blend_mode=VP, flow=self.flow)
        else:
            noise, = run("RandomNoise", noise_seed=args.seed)
        if early:
            sampler, = run("VEK_EarlyStopSampler", sampler=sampler, stop_step=0, stop_sigma=0.0, stop_fraction=args.stop_fraction)
        return noise, sampler

    def parts(self, guidance=False, sharing=False, early=False, attention=False):
        args, run = self.args, self.run
        m = run("VEK_SLRTemporalAttention", model=self.model, flow=self.flow)[0] if attention else self.model
        guider, = run("CFGGuider", model=m, positive=self.pos, negative=self.neg, cfg=3.0)
        if guidance:
            guider, = run("VEK_TemporalConsistencyGuider", guider=guider, guidance_scale=args.scale, semantic_weight=1.0,
                          pixel_start=args.pixel_start, loss_space="latent", flow=self.flow)
        noise, sampler = self._sampler(sharing, early)
        return noise, guider, sampler

    def refine(self, **flags):
        noise, guider, sampler = self.parts(**flags)
        out, _ = self.run("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=self.sigmas,
                          latent_image=self.latent)
        return out

    def score(self, out):
        image, = self.run("VAEDecode", samples=out, vae=self.vae)
        frames, ref = image.movedim(-1, 1).float(), self.video.movedim(-1, 1).float()
        return {
            "WE x100": 100 * float(warping_error(frames, self.flow.backward, self.flow.valid_backward)),
            "MSE_l x100": 100 * float(mse_low(frames, ref, 0.5)),
            "SF": float(spatial_frequency(frames)),
        }


def configurations(has_attention: bool) -> tuple[list, list]:
    """(cumulative rows, each-component-alone rows): (label, flags)."""
    cumulative = [("baseline", {}), ("+ guidance", {"guidance": True}),
                  ("+ noise sharing", {"guidance": True, "sharing": True}),
                  ("+ early stop", {"guidance": True, "sharing": True, "early": True})]
    if has_attention:
        cumulative.append(("+ attention", {"guidance": True, "sharing": True, "early": True, "attention": True}))
    alone = [("guidance only", {"guidance": True}), ("noise sharing only", {"sharing": True}),
             ("early stop only", {"early": True})] + ([("attention only", {"attention": True})] if has_attention else [])
    return cumulative, alone


def print_ablation(r: Refiner, args, rows: list) -> None:
    video, flow = r.video, r.flow
    ref_scores = {"WE x100": 100 * float(warping_error(video.movedim(-1, 1), flow.backward, flow.valid_backward)),
                  "MSE_l x100": 0.0, "SF": float(spatial_frequency(video.movedim(-1, 1)))}
    print(f"\nAblation: {args.frames} frames {args.size}px panning {args.shift}px/frame, tiny SD1.5 (random weights), "
          f"SDEdit denoise {args.denoise}, {args.steps} steps euler_ancestral, cfg 3, seed {args.seed}")
    print(f"{'configuration':<22}{'WE x100':>10}{'MSE_l x100':>12}{'SF':>9}")
    print(f"{'input video':<22}{ref_scores['WE x100']:>10.3f}{ref_scores['MSE_l x100']:>12.3f}{ref_scores['SF']:>9.4f}")
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for label, flags in rows:
        if only and label not in only:
            continue
        s = r.score(r.refine(**flags))
        print(f"{label:<22}{s['WE x100']:>10.3f}{s['MSE_l x100']:>12.3f}{s['SF']:>9.4f}", flush=True)


def print_timing(r: Refiner, args, alone: list) -> None:
    rows = []

    def plain():
        return r.refine()

    for label, flags in alone:
        res = compare(lambda f=flags: r.refine(**f), plain, warmup=0, repeats=args.repeats, label=f"{label} vs plain")
        row = res.row()
        row["ms/step"] = f"{1000 * res.median / args.steps:.0f}"
        row["plain ms/step"] = f"{1000 * res.baseline_median / args.steps:.0f}"
        rows.append(row)
    print(f"\nTime per step ({args.frames} frames of {args.size // 8}x{args.size // 8} latents, one process, "
          f"alternating rounds; early stop's ms/step is over the full schedule's {args.steps} steps)")
    print_table(rows)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    if find_comfyui() is None:
        sys.exit(describe_missing_comfyui())
    r = Refiner(ComfyHost.start(tiny_models=True), args)
    cumulative, alone = configurations(r.has_attention)
    print_ablation(r, args, cumulative + alone)
    core_overhead(args.frames)
    if args.repeats > 0:
        print_timing(r, args, alone)


if __name__ == "__main__":
    main()
