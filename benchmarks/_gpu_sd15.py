"""gpu_check parts ``nc_sdedit`` and ``slr_attention``: a full-size random-weight SD1.5 UNet sampled through ComfyUI in-process."""

from __future__ import annotations

import time

import torch
from _bench import compare


class EnvironmentProblem(RuntimeError):
    """ComfyUI (or one of its imports) is missing here: gpu_check exits with code 3 and this message."""


def start_comfy(path, device: str):
    """Boot ComfyUI in this process with the pack loaded, as the pack's in-process host does; return the host.

    The one place this script imports the host: re-point it here when the host moves.
    """
    from video_enhance_kit.host import ComfyHost, HostError

    try:
        return ComfyHost.start(path, device="cpu" if device == "cpu" else "gpu")
    except HostError as exc:
        raise EnvironmentProblem(f"{exc} (the SD1.5 parts need ComfyUI; --parts venhancer runs without it)") from exc
    except ImportError as exc:
        raise EnvironmentProblem(f"ComfyUI cannot start in this Python: {exc}; install ComfyUI's requirements "
                                 "(on the GPU machine: carry the wheels, see benchmarks/README.md)") from exc


def build_sd15(toy: bool, device: str):
    """A random-weight SD1.5 MODEL, full size or the toy (fp16 on CUDA, fp32 elsewhere)."""
    from video_enhance_kit.host import sampling

    return sampling.random_sd15(not toy, device, torch.float16 if device == "cuda" else torch.float32)


def conditioning(seed: int) -> list:
    """A random CLIP-L-shaped conditioning [[1, 77, 768], {}] (no text encoder needed)."""
    return [[torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(seed)), {}]]


class Sampling:
    """One model, its prompts and a latent: runs ComfyUI's CFGGuider.sample as SamplerCustomAdvanced does."""

    def __init__(self, model, latent: torch.Tensor, cfg: float, seed: int = 1):
        self.model, self.latent, self.cfg, self.seed = model, latent, cfg, seed
        self.positive, self.negative = conditioning(2), conditioning(3)
        self.finite = True

    def sample(self, model, sampler, sigmas, callback=None) -> torch.Tensor:
        from video_enhance_kit.host import sampling

        out = sampling.cfg_sample(model, self.latent, self.positive, self.negative, self.cfg, sampler, sigmas, self.seed, callback)
        self.finite = self.finite and bool(torch.isfinite(out).all())
        return out


def nc_row(model, pack, sizes, device: str) -> dict:
    """Row ``nc_sdedit``: NC-SDEdit (Noise Calibration N, DDIM) against plain SDEdit at the same steps and denoise."""
    from video_enhance_kit.host import sampling

    nc = pack("noise_calibration")
    latent = torch.randn(sizes.nc_frames, 4, sizes.latent, sizes.latent, generator=torch.Generator().manual_seed(0))
    run = Sampling(model, latent, sizes.cfg)
    sigmas = nc.sdedit_sigmas(model, "ddim", "normal", sizes.steps, sizes.denoise)
    plain = sampling.sampler("ddim")
    calibrator = nc.Calibrator(sizes.iterations, on_step=lambda k, x0, err: None)  # defaults: cutoff 1, ideal_reference, 2-D, guided
    calibrated = nc.wrap_sampler(sampling.sampler("ddim"), calibrator)
    res = compare(lambda: run.sample(model, calibrated, sigmas), lambda: run.sample(model, plain, sigmas), warmup=sizes.warmup,
                  repeats=sizes.repeats, device=device, show=False)
    return {
        "check": "nc_sdedit", "case": f"N={sizes.iterations} vs SDEdit, DDIM {sizes.steps} steps, denoise {sizes.denoise}, "
                                      f"{sizes.latent}x{sizes.latent} latent, cfg {sizes.cfg}",
        "frames": sizes.nc_frames, "ours_s": res.median, "baseline_s": res.baseline_median, "ratio": res.ratio,
        "expected_ratio": (sizes.steps + sizes.iterations) / sizes.steps, "ours_peak_bytes": res.peak.bytes,
        "baseline_peak_bytes": res.baseline_peak.bytes, "rounds": len(res.times), "finite": run.finite,
    }


class LastStepClock:
    """A clock for ``compare`` that advances only by the last sampling step's time (measured in the step callback)."""

    def __init__(self, device: str):
        self.now, self.device = 0.0, device

    def __call__(self) -> float:
        return self.now

    def _sync(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def run(self, sample) -> None:
        """``sample(callback)`` runs the sampling; the clock moves by the time between the last two step callbacks."""
        stamps = [self._sync()]
        sample(lambda step, x0, x, total: stamps.append(self._sync()))
        self.now += stamps[-1] - stamps[-2]


class SLRComparison:
    """The SLR-patched clone of a model and the unpatched model, sampled alike; counts trajectory-attention calls."""

    def __init__(self, model, pack, sizes, device: str):
        from video_enhance_kit.host import sampling

        slr = pack("slr_attention")
        self.model, self.sizes, self.device = model, sizes, device
        self.patched, patch = slr.slr_patch(model, cross_neighbour=True, trajectory=True, trajectory_start=0.0, output_blocks="all")
        self.sigmas = sampling.model_sigmas(model, "normal", sizes.slr_steps)
        self.sampler = sampling.sampler("ddim")
        self.trajectory_calls = self.patched_runs = 0
        links = patch.layer.corrector.corrected_links

        def counted_links(*args, **kwargs):  # a check that the timed step really runs trajectory attention
            self.trajectory_calls += 1
            return links(*args, **kwargs)

        patch.layer.corrector.corrected_links = counted_links

    def row(self, frames: int) -> dict:
        """Row ``slr_attention`` at ``frames``: the last step's time patched / unpatched, and each run's peak memory."""
        sizes = self.sizes
        run = Sampling(self.model, torch.zeros(frames, 4, sizes.latent, sizes.latent), sizes.cfg)
        clock = LastStepClock(self.device)
        self.trajectory_calls = self.patched_runs = 0

        def patched():
            self.patched_runs += 1
            clock.run(lambda cb: run.sample(self.patched, self.sampler, self.sigmas, cb))

        def plain():
            clock.run(lambda cb: run.sample(self.model, self.sampler, self.sigmas, cb))

        res = compare(patched, plain, warmup=sizes.warmup, repeats=sizes.repeats, device=self.device, timer=clock,
                      sync=lambda: None, show=False)
        return {
            "check": "slr_attention", "case": f"step {sizes.slr_steps} of {sizes.slr_steps} (trajectories on) vs unpatched, "
                                              f"{sizes.latent}x{sizes.latent} latent, cfg {sizes.cfg}",
            "frames": frames, "ours_s": res.median, "baseline_s": res.baseline_median, "ratio": res.ratio,
            "ours_peak_bytes": res.peak.bytes, "baseline_peak_bytes": res.baseline_peak.bytes, "rounds": len(res.times),
            "finite": run.finite, "trajectory_calls_per_run": self.trajectory_calls / max(1, self.patched_runs),
        }


def slr_rows(model, pack, sizes, device: str) -> list[dict]:
    """Rows ``slr_attention``: one trajectory step of the SLR-patched UNet against the unpatched one, per frame count."""
    comparison = SLRComparison(model, pack, sizes, device)
    rows = []
    for frames in sizes.slr_frames:
        rows.append(comparison.row(frames))
        print(rows[-1], flush=True)
    return rows


def sd15_rows(sizes, device: str, comfyui_path=None) -> list[dict]:
    """Boot ComfyUI, build the SD1.5 UNet (full size, or the toy), and measure NC-SDEdit and SLR attention."""
    import importlib

    start_comfy(comfyui_path, device)
    model = build_sd15(sizes.toy, device)

    def pack(name: str):
        return importlib.import_module(f"video_enhance_kit.nodes.{name}")

    rows = [nc_row(model, pack, sizes, device)]
    print(rows[-1], flush=True)
    rows += slr_rows(model, pack, sizes, device)
    return rows
