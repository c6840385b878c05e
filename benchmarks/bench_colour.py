"""Colour Correction (issue 13): what each mode fixes and keeps, its time per frame and peak memory, on the sample clip.

What it runs (core only, no ComfyUI): the bundled clip ``assets/vek_sample.mp4`` (``--frames`` frames) as the source;
a stand-in for an enhancer's output at ``--scale`` x its size: the source upscaled (bicubic), sharpened (unsharp mask:
new detail) and drifted in colour (a per-channel gain and offset that vary smoothly across the frame, up to about
0.1). Each mode of ``utils.colour.colour_correct`` corrects it against the source (resized to the result by the node's
rule). Printed per mode, against the drift-free upscale ``ref``:

- ``mean err x255``: the largest per-frame, per-channel |mean(out) - mean(ref)|, in 8-bit levels;
- ``MSE_l``: the NC paper's low-frequency MSE against ``ref`` (colour / layout drift; the metric the report shows);
- ``detail kept``: ``1 - relative_rms(D(out), D(result))``, ``D(x) = x - gaussian_blur(x, sigma 1 px)``: how much of
  the result's fine detail survives (1 = all of it; an FFT high-pass would be dominated by its wrap-around at the
  frame's borders);
- seconds per frame (median of ``--repeats`` runs) and the RSS peak of one run (utils.memory.PeakMemory, one phase
  per mode; on CUDA the allocator's peak).

    python benchmarks/bench_colour.py [--frames 8] [--scale 4] [--repeats 3] [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import print_table
from video_enhance_kit.host.video_io import decode
from video_enhance_kit.utils.colour import MODES, colour_correct, resize_to
from video_enhance_kit.utils.memory import PeakMemory, gib
from video_enhance_kit.utils.metrics import mse_low, relative_rms

CLIP = Path(__file__).resolve().parents[1] / "assets" / "vek_sample.mp4"


def source_frames(frames: int) -> torch.Tensor:
    """The sample clip's first ``frames`` frames, ``[F, 3, H, W]`` in 0..1."""
    video, _ = decode(CLIP.read_bytes(), "sample clip")
    return video[:frames].permute(0, 3, 1, 2).float() / 255


def enhanced(source: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ref, result)``: the drift-free bicubic upscale and the sharpened, colour-drifted stand-in output."""
    h, w = source.shape[-2] * scale, source.shape[-1] * scale
    ref = resize_to(source, (h, w))
    detail = ref - F.avg_pool2d(F.pad(ref, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    ys, xs = torch.linspace(-1, 1, h).view(h, 1), torch.linspace(-1, 1, w).view(1, w)
    field = torch.stack([0.04 + 0.04 * xs + 0.02 * ys, -0.03 - 0.04 * ys + 0 * xs, 0.02 + 0.04 * xs * ys]).unsqueeze(0)
    gain = torch.tensor([1.08, 0.94, 1.0]).view(1, 3, 1, 1)
    result = ((ref + 0.8 * detail - 0.5) * gain + 0.5 + field).clamp(0, 1)
    return ref, result


def row(name: str, out: torch.Tensor, ref: torch.Tensor, result: torch.Tensor, seconds: float | None, peak: dict | None) -> dict:
    if peak is None:
        return {"mode": name, **quality(out, ref, result), "s / frame": "-", "peak": "-", "peak over start": "-"}
    return {"mode": name, **quality(out, ref, result), "s / frame": f"{seconds / out.shape[0]:.4f}",
            "peak": gib(peak["peak_bytes"]), "peak over start": gib(peak["peak_bytes"] - peak["start_bytes"])}


def fine(x: torch.Tensor) -> torch.Tensor:
    """Fine detail: ``x`` minus its gaussian blur (sigma 1 px, reflect borders; no FFT wrap-around)."""
    return x - gaussian_blur2d(x, (7, 7), (1.0, 1.0), border_type="reflect")


def quality(out: torch.Tensor, ref: torch.Tensor, result: torch.Tensor) -> dict:
    err = (out.mean((-2, -1)) - ref.mean((-2, -1))).abs().max() * 255
    kept = 1 - relative_rms(fine(out), fine(result))
    return {"mean err x255": f"{float(err):.2f}", "MSE_l": f"{float(mse_low(out, ref)):.2e}", "detail kept": f"{float(kept):.3f}"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = source_frames(args.frames)
    ref, result = enhanced(source, args.scale)
    source, ref, result = (t.to(args.device) for t in (source, ref, result))
    print(f"source {tuple(source.shape)}, result {tuple(result.shape)}, {args.device}, {torch.get_num_threads()} threads")
    rows = [row("none (result)", result, ref, result, None, None)]
    peak = PeakMemory(MODES, device=args.device)
    for mode in MODES:
        with peak.phase(mode):
            out = colour_correct(result, source, mode)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            colour_correct(result, source, mode)
            times.append(time.perf_counter() - t0)
        rows.append(row(mode, out, ref, result, statistics.median(times), peak.measured[mode]))
    print_table(rows)
    print("\n".join(peak.lines("peak memory of one run per mode")))


if __name__ == "__main__":
    main()
