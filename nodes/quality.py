"""Video Quality Report: full-reference metrics of a video (and a second candidate) as text and a plot.

Thin adapter over :mod:`..utils.metrics` (MSE, PSNR, SSIM, MSE_l, SF / D_SF, warping error; FS and OFME, ZVRD's,
in :mod:`._quality_temporal`, off by default). The flow for
the warping error comes from the optional ``flow`` input or is estimated from the reference with
:func:`..utils.flow.estimate_flow`; the plot is drawn with Pillow (ComfyUI ships no matplotlib).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw, ImageFont

from ..utils import metrics as M
from ..utils.checks import InputError, check_same_shape
from ..utils.video import image_to_frames
from . import _quality_temporal as T
from ._common import Progress, bounds, check_ranges, image_frames, throw_if_interrupted
from ._types import Flow

CATEGORY = "video-enhance-kit/metrics"

# name, label in the report, better direction, plot panel title (None: not plotted)
ROWS = (
    ("mse", "MSE", "lower", None),
    ("psnr", "PSNR (dB)", "higher", "PSNR (dB), higher is better"),
    ("ssim", "SSIM", "higher", "SSIM, higher is better"),
    ("mse_l", "MSE_l (nu={cutoff})", "lower", "MSE_l (nu={cutoff}), lower is better"),
    ("sf", "SF", None, None),
    ("d_sf", "D_SF = SF - SF(ref)", "higher", None),
    ("we", "WE x100", "lower", "Warping error x100, lower is better"),
    ("fs", "FS", "higher", None),
    ("ofme", "OFME (px)", "lower", None),
)
NOTED = (("we", "WE x100", "WE: warping error x100 (Lai et al. 2018, as ZVRD reports it)"),
         ("fs", "FS", "FS: frame similarity"), ("ofme", "OFME (px)", "OFME: optical flow map error"))
RANGES = {"cutoff": (0.01, 1.0), "ssim_window": (3, 31), "flow_resolution": (0, 4096)}
COLOURS = {"video": (31, 119, 180), "candidate": (230, 110, 10), "reference": (130, 130, 130)}


# ------------------------------------------------------------------------------------- report
def fmt(v: float | None) -> str:
    """A number for the table: ``26.22``, ``0.9851``, ``3.905e-04``; ``inf`` for infinite, ``n/a`` for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if a >= 1e4 or (0 < a < 1e-3):
        return f"{v:.3e}"
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.4f}"


def _mean(values: torch.Tensor | None, scale: float = 1.0) -> float | None:
    """Mean over frames; +inf values (PSNR of identical frames) are left out unless every frame is +inf."""
    if values is None or values.numel() == 0:
        return None
    values = values.double()
    finite = values[~torch.isposinf(values)]
    return (float(finite.mean()) if finite.numel() else float("inf")) * scale


def _identical_frames(values: torch.Tensor | None) -> int:
    """How many frames have PSNR +inf (identical to the reference) while others do not."""
    if values is None:
        return 0
    n = int(torch.isposinf(values).sum())
    return n if n < values.numel() else 0


def _better(direction: str | None, video: float | None, candidate: float | None) -> str:
    if direction is None or video is None or candidate is None:
        return "-"
    if video == candidate:
        return "tie"
    return "candidate" if (candidate < video if direction == "lower" else candidate > video) else "video"


def build_report(results: dict[str, dict[str, torch.Tensor]], reference_extra: dict[str, torch.Tensor], info: dict) -> str:
    """The readable table: mean of each metric for video (and candidate), their difference, which is better."""
    has_cand = "candidate" in results
    header = ["metric", "video"] + (["candidate", "cand - video", "better"] if has_cand else []) + ["reference"]
    rows = []
    for key, label, direction, _ in ROWS:
        if key not in results["video"]:
            continue
        scale = 100.0 if key == "we" else 1.0
        v = _mean(results["video"][key], scale)
        row = [label.format(cutoff=info["cutoff"]), fmt(v)]
        if has_cand:
            c = _mean(results["candidate"].get(key), scale)
            diff = None if v is None or c is None else (c - v if not (math.isinf(v) and math.isinf(c)) else float("nan"))
            row += [fmt(c), ("+" if diff is not None and not math.isnan(diff) and diff > 0 else "") + fmt(diff), _better(direction, v, c)]
        row.append(fmt(_mean(reference_extra.get(key), scale)) if key in reference_extra else "-")
        rows.append(row)
    for key, label, _ in NOTED:
        if key not in results["video"] and info.get(f"{key}_note"):
            rows.append([label, "n/a"] + (["n/a", "-", "-"] if has_cand else []) + ["-"])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = [
        f"Video Quality Report: {info['frames']} frame(s) {info['height']}x{info['width']}, each vs the reference (means over frames)",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    notes = []
    if "psnr" in results["video"]:
        notes.append("PSNR = mean of per-frame PSNR (inf = identical frames); SSIM: gaussian window " f"{info['ssim_window']}.")
        for name, res in results.items():
            if n := _identical_frames(res.get("psnr")):
                notes.append(f"PSNR of {name}: {n} frame(s) identical to the reference (inf) are left out of the mean.")
    if "mse_l" in results["video"]:
        notes.append(f"MSE_l: MSE of the FFT low-pass (nu = {info['cutoff']}) of result and reference (NC paper).")
    if "sf" in results["video"]:
        notes.append("SF: spatial frequency sqrt(RF^2 + CF^2); D_SF > 0: more detail than the reference (NC paper).")
    notes += [f"{intro}; {info[f'{key}_note']}." for key, _, intro in NOTED if info.get(f"{key}_note")]
    return "\n".join(lines + [""] + notes)


# --------------------------------------------------------------------------------------- plot
def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _draw_panel(draw: ImageDraw.ImageDraw, box, title: str, series: dict[str, tuple[list[int], list[float]]], font) -> None:
    """One line chart in ``box = (x0, y0, x1, y1)``: ``series`` maps a name to (frame indices, values)."""
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 62, x1 - 12, y0 + 40, y1 - 30
    draw.text((x0 + 8, y0 + 4), title, fill=(0, 0, 0), font=font)
    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    finite = [v for _, vals in series.values() for v in vals if math.isfinite(v)]
    xs_all = [x for xs, _ in series.values() for x in xs]
    if not xs_all:
        draw.text((left + 8, top + 8), "n/a", fill=(0, 0, 0), font=font)
        return
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1e-3
        lo, hi = lo - pad, hi + pad
    xmin, xmax = min(xs_all), max(xs_all)
    span = max(xmax - xmin, 1)

    def to_px(x, v):
        px = left + 6 + (x - xmin) / span * (right - left - 12)
        vv = hi if not math.isfinite(v) else v  # inf (identical frames) pinned to the top edge
        return px, bottom - 4 - (vv - lo) / (hi - lo) * (bottom - top - 8)

    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        _, py = to_px(xmin, v)
        draw.line((left, py, right, py), fill=(230, 230, 230))
        draw.text((x0 + 4, py - 6), fmt(v), fill=(60, 60, 60), font=font)
    for x in sorted({xmin, xmax, (xmin + xmax) // 2}):
        px, _ = to_px(x, lo)
        draw.text((px - 4, bottom + 3), str(x), fill=(60, 60, 60), font=font)
    draw.text(((left + right) // 2 - 14, bottom + 15), "frame", fill=(60, 60, 60), font=font)
    legend_x = right - 8
    for name, (xs, vals) in reversed(list(series.items())):
        colour = COLOURS.get(name, (0, 0, 0))
        pts = [to_px(x, v) for x, v in zip(xs, vals)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        if len(pts) <= 64:
            for px, py in pts:
                draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        if any(math.isinf(v) for v in vals):
            draw.text((left + 6, top + 2), "inf at top edge", fill=colour, font=font)
        width = int(draw.textlength(name, font=font))
        legend_x -= width + 18
        draw.rectangle((legend_x, y0 + 26, legend_x + 10, y0 + 34), fill=colour)
        draw.text((legend_x + 13, y0 + 22), name, fill=(0, 0, 0), font=font)


def plot_curves(results: dict[str, dict[str, torch.Tensor]], reference_extra: dict[str, torch.Tensor], cutoff: float, panel=(420, 250)) -> torch.Tensor:
    """IMAGE ``[1, H, W, 3]`` with one panel per plotted metric (per-frame curves of video, candidate, reference)."""
    panels = []
    for key, _, _, title in ROWS:
        if title is None or key not in results["video"]:
            continue
        scale = 100.0 if key == "we" else 1.0
        start = 1 if key == "we" else 0  # WE of pair (i, i+1) is plotted at frame i+1
        series = {}
        for name, res in list(results.items()) + ([("reference", reference_extra)] if key in reference_extra else []):
            if key in res:
                vals = [float(v) * scale for v in res[key].double()]
                series[name] = (list(range(start, start + len(vals))), vals)
        panels.append((title.format(cutoff=cutoff), series))
    if not panels:
        panels.append(("no per-frame metric selected", {}))
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    w, h = panel
    img = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(12)
    for i, (title, series) in enumerate(panels):
        c, r = i % cols, i // cols
        _draw_panel(draw, (c * w, r * h, (c + 1) * w, (r + 1) * h), title, series, font)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)


# ------------------------------------------------------------------------------------- flow
def _flow_for(reference: torch.Tensor, flow, flow_resolution: int):
    """``(backward [F-1, 2, H, W], valid [F-1, 1, H, W], note)`` from the given flow or estimated from the reference."""
    frames, h, w = reference.shape[0], reference.shape[-2], reference.shape[-1]
    if flow is not None:
        if not all(hasattr(flow, a) for a in ("backward", "valid_backward", "resized")):
            raise InputError("flow", f"is a {type(flow).__name__}, not a video flow", "connect the flow output of Estimate Optical Flow")
        if flow.backward.shape[0] + 1 != frames:
            raise InputError(
                "flow",
                f"describes {flow.backward.shape[0] + 1} frames but the reference has {frames}",
                "estimate the flow from the reference video (same frames), or leave 'flow' unconnected",
            )
        if tuple(flow.backward.shape[-2:]) != (h, w):
            flow = flow.resized((h, w))
        return flow.backward.float(), flow.valid_backward.float(), "flow from the 'flow' input, occluded pixels masked"
    try:
        est, where = estimated_flow(reference, flow_resolution)
    except ImportError:
        return None, None, "n/a: no flow connected and no flow estimator installed"
    return est.backward, est.valid_backward, f"flow estimated from the reference ({where}), occluded pixels masked"


def estimated_flow(frames: torch.Tensor, flow_resolution: int):
    """The pack's flow of ``frames [F, C, H, W]``, estimated with the longest side at most ``flow_resolution`` (0 = full)
    and brought back to the frames' size; and where it was estimated (for the report's note)."""
    from ..utils.flow import estimate_flow

    h, w = frames.shape[-2:]
    small = frames
    if flow_resolution and max(h, w) > flow_resolution:
        scale = flow_resolution / max(h, w)
        small = F.interpolate(frames, size=(max(4, round(h * scale)), max(4, round(w * scale))), mode="area")
    est = estimate_flow(small.float())
    if tuple(small.shape[-2:]) != (h, w):
        est = est.resized((h, w))
    return est, (f"at {small.shape[-1]}x{small.shape[-2]}" if small is not frames else "at full resolution")


def _match_size(image: torch.Tensor, reference: torch.Tensor, name: str) -> torch.Tensor:
    """IMAGE ``image`` scaled to ``reference``'s H, W (bicubic, antialiased, clamped to 0..1); frame counts must match."""
    if image.shape[0] != reference.shape[0]:
        raise InputError(
            name,
            f"has {image.shape[0]} frames but the reference has {reference.shape[0]}",
            "score videos with the same frame count (trim one, or interpolate the reference to the same frame rate)",
        )
    if image.shape[1:3] == reference.shape[1:3]:
        return image
    x = F.interpolate(image.movedim(-1, 1).float(), size=tuple(reference.shape[1:3]), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(0, 1).movedim(1, -1)


# ------------------------------------------------------------------------------------- node
class VideoQualityReport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VideoQualityReport",
            display_name="Video Quality Report",
            category=CATEGORY,
            description=(
                "Scores a video against a reference (and optionally a second candidate, to compare two settings): "
                "MSE, PSNR, SSIM, low-frequency MSE (MSE_l, NC paper), spatial frequency SF and D_SF, and the "
                "warping error WE (temporal flicker, ZVRD), and optionally ZVRD's FS (CLIP frame similarity) and OFME "
                "(optical flow map error). Returns a text table and a plot of per-frame curves."
            ),
            inputs=[
                io.Image.Input("video", tooltip="The video to score (a batch of frames), e.g. the enhanced output."),
                io.Image.Input("reference", tooltip="The video to compare against, e.g. the input before enhancement. Same frame count and size as 'video'."),
                io.Image.Input("candidate", optional=True, tooltip="Optional second video scored the same way (e.g. the same graph with other settings); the report shows the difference candidate - video and which is better."),
                Flow.Input("flow", optional=True, tooltip="Optional optical flow of the reference (Estimate Optical Flow) for the warping error. If unconnected, the flow is estimated from the reference."),
                io.Boolean.Input("psnr_ssim", default=True, tooltip="Compute MSE, PSNR and SSIM against the reference."),
                io.Boolean.Input("mse_low", default=True, tooltip="Compute MSE_l, the MSE of the low frequencies (NC paper): how much the content / layout / colours drifted."),
                io.Boolean.Input("spatial_frequency", default=True, tooltip="Compute the spatial frequency SF and D_SF = SF(video) - SF(reference): positive means more fine detail than the reference."),
                io.Boolean.Input("warping_error", default=True, tooltip="Compute the warping error WE: difference between each frame and the previous one warped by the flow (lower = less flicker). Needs 2+ frames."),
                io.Float.Input("cutoff", default=0.5, **bounds(RANGES, "cutoff"), step=0.01, tooltip="Threshold frequency nu of MSE_l's low-pass: fraction of the spectrum kept on each axis (the NC paper measures with 0.5)."),
                io.Int.Input("ssim_window", default=11, **bounds(RANGES, "ssim_window"), step=2, tooltip="Odd size of SSIM's gaussian window (11 is the standard; it shrinks on tiny frames)."),
                io.Int.Input("flow_resolution", default=256, **bounds(RANGES, "flow_resolution"), step=8, tooltip="When the flow is estimated here: longest side it is estimated at (then scaled up), for speed. 0 = full resolution."),
                io.Boolean.Input("resize_to_reference", default=False, optional=True, tooltip="Scale 'video' and 'candidate' to the reference's width and height (bicubic, antialiased) before scoring, e.g. to score an upscaled output against its input. Frame counts must still match. Off: different sizes are an error."),
                io.Boolean.Input("frame_similarity", default=False, optional=True, tooltip="Compute FS (ZVRD): mean cosine similarity of the CLIP image embeddings of neighbouring frames (higher = semantically steadier). Needs clip_vision; the report says so when it is absent."),
                io.Boolean.Input("flow_map_error", default=False, optional=True, tooltip="Compute OFME (ZVRD): mean end-point error in pixels between the optical flow of each video and of the reference (lower = motion kept). Uses the pack's flow estimator at flow_resolution."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip="CLIP vision model (Load CLIP Vision) for FS; the frames are encoded as CLIP Vision Encode does (whole frame)."),
            ],
            outputs=[
                io.String.Output("report", display_name="report", tooltip="The numbers as a text table (connect to Preview Any to read it)."),
                io.Image.Output("plot", display_name="plot", tooltip="Per-frame curves of PSNR, SSIM, MSE_l and WE as an image."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, reference, candidate=None, flow=None, psnr_ssim=True, mse_low=True, spatial_frequency=True,
                warping_error=True, cutoff=0.5, ssim_window=11, flow_resolution=256, resize_to_reference=False,
                frame_similarity=False, flow_map_error=False, clip_vision=None) -> io.NodeOutput:
        wanted = {"fs": bool(frame_similarity), "ofme": bool(flow_map_error)}
        picked = check_report_inputs(cutoff, ssim_window, flow_resolution, (psnr_ssim, mse_low, spatial_frequency, warping_error),
                                     any(wanted.values()))
        reference = image_frames(reference, "reference")
        ref = image_to_frames(reference).float()
        frames, _, h, w = ref.shape
        videos = scored_videos({"video": video, "candidate": candidate}, reference, resize_to_reference)
        progress = Progress(len(videos) + 1)
        backward = valid = we_note = None
        if "warping_error" in picked or wanted["ofme"]:
            if frames < 2:
                we_note = "n/a: the warping error needs at least 2 frames"
            else:
                backward, valid, we_note = _flow_for(ref, flow, flow_resolution)
        we_backward = backward if "warping_error" in picked else None
        progress.tick()
        results = {}
        for name, frames_ in videos.items():
            throw_if_interrupted()
            results[name] = M.video_metrics(frames_, ref, metrics=picked, cutoff=float(cutoff), window_size=int(ssim_window), flow=we_backward, mask=valid)
            progress.tick()
        reference_extra = reference_metrics(ref, "sf" in results["video"], we_backward, valid)
        notes = temporal_metrics(results, reference_extra, videos, ref, backward, clip_vision, flow_resolution, wanted)
        info = {"frames": frames, "height": h, "width": w, "cutoff": float(cutoff), "ssim_window": int(ssim_window),
                "we_note": we_note if "warping_error" in picked else None, **notes}
        report = build_report(results, reference_extra, info)
        plot = plot_curves(results, reference_extra, float(cutoff))
        shown = ui.PreviewText(report).as_dict() | ui.PreviewImage(plot, cls=cls).as_dict()
        return io.NodeOutput(report, plot, ui=shown)


def temporal_metrics(results, reference_extra, videos, ref, backward, clip_vision, flow_resolution, wanted) -> dict:
    """FS and OFME (ZVRD) into ``results`` (and the reference's FS into ``reference_extra``); returns their notes."""
    notes = {}
    if wanted["fs"]:
        per, ref_fs, notes["fs_note"] = T.frame_similarities(videos, ref, clip_vision)
        for name, values in (per or {}).items():
            results[name]["fs"] = values
        if ref_fs is not None:
            reference_extra["fs"] = ref_fs
    if wanted["ofme"]:
        per, notes["ofme_note"] = T.flow_map_errors(videos, backward, flow_resolution, estimated_flow)
        for name, values in (per or {}).items():
            results[name]["ofme"] = values
    return notes


def check_report_inputs(cutoff, ssim_window, flow_resolution, switches, others: bool = False) -> list[str]:
    """The numbers against :data:`RANGES` (the SSIM window odd); the metrics switched on (at least one, ``others``: FS / OFME)."""
    check_ranges(RANGES, cutoff=cutoff, ssim_window=ssim_window)
    if ssim_window % 2 == 0:
        raise InputError("ssim_window", f"must be odd, got {ssim_window}", f"use {ssim_window + 1}")
    check_ranges(RANGES, flow_resolution=flow_resolution)
    picked = [name for name, on in zip(M.METRICS, switches) if on]
    if not picked and not others:
        raise InputError("psnr_ssim", "no metric is switched on",
                         "switch on at least one of psnr_ssim, mse_low, spatial_frequency, warping_error, frame_similarity, flow_map_error")
    return picked


def scored_videos(inputs: dict, reference: torch.Tensor, resize_to_reference: bool) -> dict[str, torch.Tensor]:
    """``{name: frames [F, C, H, W] float}`` of the connected videos, checked against (or scaled to) the reference."""
    videos = {}
    for name, value in inputs.items():
        if value is None:
            continue
        value = image_frames(value, name)
        if resize_to_reference:
            value = _match_size(value, reference, name)
        elif value.shape[0] == reference.shape[0] and value.shape[1:3] != reference.shape[1:3]:
            raise InputError(
                name,
                f"is {value.shape[2]}x{value.shape[1]} but the reference is {reference.shape[2]}x{reference.shape[1]}",
                "switch on resize_to_reference, or scale one of them to the other's size",
            )
        check_same_shape(value, reference, name, "reference")
        videos[name] = image_to_frames(value).float()
    return videos


def reference_metrics(ref: torch.Tensor, spatial_frequency: bool, backward, valid) -> dict[str, torch.Tensor]:
    """The reference's own per-frame SF and warping error (the baselines the report and plot show)."""
    extra = {}
    if spatial_frequency:
        extra["sf"] = M.spatial_frequency_per_frame(ref)
    if backward is not None:
        extra["we"] = M.warping_error_per_pair(ref, backward, valid)
    return extra


NODES = [VideoQualityReport]
