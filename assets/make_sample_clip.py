"""Make the bundled sample clip ``assets/vek_sample.mp4`` (deterministic, procedurally drawn).

Licence of the clip: CC0 1.0 Universal (public domain dedication). The clip and this script's
output contain no third-party material: every pixel is computed from the formulas below, so anyone
may use, modify and redistribute the clip for any purpose without asking.
https://creativecommons.org/publicdomain/zero/1.0/

The scene has texture at several scales and known, smooth motion, so flicker and flow-warping
metrics are meaningful on it:

- background: a sum of sinusoidal gratings (analytic, so sub-pixel shifts are exact) plus a soft
  checkerboard, panning by ``BACKGROUND_VELOCITY`` = (0.6, 0.25) pixels per frame (dx, dy) at 256 px;
- object: a textured disc (radius 0.16 of the frame) whose texture moves with it, travelling on
  an ellipse around the frame centre (:func:`object_centre`).

Default output: 25 frames (4k + 1, what Wan-family models want) at 8 fps (about 3 s), 256 x 256,
H.264 yuv420p, well under 1 MB. ``--tiny`` writes the small test variant ``assets/vek_sample_tiny.mp4``
(64 x 64, 9 frames). Motion scales with the size, so the ground-truth flow of any variant is
:func:`true_flow` (pixels, frame i -> frame i+1).

Usage::

    python assets/make_sample_clip.py               # assets/vek_sample.mp4
    python assets/make_sample_clip.py --tiny        # assets/vek_sample_tiny.mp4
    python assets/make_sample_clip.py --size 128 --frames 17 --out /tmp/clip.mp4
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "vek_sample.mp4"
TINY_OUT = HERE / "vek_sample_tiny.mp4"

BACKGROUND_VELOCITY = (0.6, 0.25)  # pixels per frame (dx, dy) at the reference size
REFERENCE_SIZE = 256
OBJECT_RADIUS = 0.16  # of the frame size
OBJECT_ORBIT = (0.22, 0.14)  # ellipse semi-axes (x, y), of the frame size
SEED = 20251121


def _gratings(rng: np.random.Generator, count: int, low: float, high: float, total: float):
    """Random gratings: (frequency vector in cycles per reference pixel, phase, amplitude, rgb weight).

    Amplitudes fall with frequency and sum to ``total`` (so the texture never clips much).
    """
    out = []
    for _ in range(count):
        freq = math.exp(rng.uniform(math.log(low), math.log(high)))
        angle = rng.uniform(0, math.pi)
        out.append(
            (
                freq * math.cos(angle),
                freq * math.sin(angle),
                rng.uniform(0, 2 * math.pi),
                rng.uniform(0.5, 1.0) / (1.0 + 20 * freq),
                rng.uniform(0.2, 1.0, size=3),
            )
        )
    norm = total / sum(g[3] for g in out)
    return [(fx, fy, ph, amp * norm, rgb) for fx, fy, ph, amp, rgb in out]


_RNG = np.random.default_rng(SEED)
_BACKGROUND = _gratings(_RNG, 14, 1 / 128, 1 / 5, total=0.9)
_OBJECT = _gratings(_RNG, 6, 1 / 24, 1 / 4, total=0.5)


def _texture(u: np.ndarray, v: np.ndarray, gratings, base) -> np.ndarray:
    """Sum of gratings at reference-pixel coordinates (u, v) -> [H, W, 3] around ``base``."""
    img = np.zeros(u.shape + (3,), dtype=np.float64)
    for fx, fy, phase, amp, rgb in gratings:
        img += amp * np.sin(2 * math.pi * (fx * u + fy * v) + phase)[..., None] * rgb
    return np.asarray(base) + img


def object_centre(t: float, size: int = REFERENCE_SIZE, frames: int = 25) -> tuple[float, float]:
    """Centre (x, y) of the disc in pixels at frame ``t`` (one smooth lap of the ellipse over the clip)."""
    angle = 2 * math.pi * t / frames
    return (
        size / 2 + OBJECT_ORBIT[0] * size * math.cos(angle),
        size / 2 + OBJECT_ORBIT[1] * size * math.sin(angle),
    )


def render_frame(t: float, size: int = REFERENCE_SIZE, frames: int = 25) -> np.ndarray:
    """Frame ``t`` as float RGB ``[size, size, 3]`` in 0..1 (supersampled below the reference size, no aliasing)."""
    k = min(4, max(1, REFERENCE_SIZE // size))
    if k > 1:
        fine = _render(t, size * k, frames)
        return fine.reshape(size, k, size, k, 3).mean(axis=(1, 3))
    return _render(t, size, frames)


def _render(t: float, size: int, frames: int) -> np.ndarray:
    scale = REFERENCE_SIZE / size  # evaluate the scene in reference pixels
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (xs + 0.5) * scale, (ys + 0.5) * scale
    # background: pans by BACKGROUND_VELOCITY, content at p in frame t came from p - v t
    u, v = x - BACKGROUND_VELOCITY[0] * t, y - BACKGROUND_VELOCITY[1] * t
    bg = _texture(u, v, _BACKGROUND, (0.45, 0.5, 0.55))
    checker = np.sin(2 * math.pi * u / 48) * np.sin(2 * math.pi * v / 48)
    bg += 0.12 * np.tanh(4 * checker)[..., None] * np.array([1.0, 0.8, 0.6])
    # object: a textured disc, anti-aliased edge one pixel wide
    cx, cy = object_centre(t, REFERENCE_SIZE, frames)
    r = OBJECT_RADIUS * REFERENCE_SIZE
    dist = np.hypot(x - cx, y - cy)
    alpha = np.clip(r - dist / 1.0 + 0.5 * scale, 0, scale) / scale
    obj = _texture(x - cx, y - cy, _OBJECT, (0.85, 0.35, 0.2))
    rim = 0.5 + 0.5 * np.cos(np.clip(dist / r, 0, 1) * math.pi / 2)  # shading towards the rim
    obj = obj * rim[..., None]
    img = alpha[..., None] * obj + (1 - alpha[..., None]) * bg
    return np.clip(img, 0.0, 1.0)


def true_flow(i: int, size: int = REFERENCE_SIZE, frames: int = 25) -> np.ndarray:
    """Ground-truth forward flow frame i -> i+1, ``[2, size, size]`` in pixels (dx, dy).

    Background pixels move by the pan; disc pixels by the disc centre's displacement (pixels
    near the disc's edge are occluded or disoccluded and have no exact flow).
    """
    scale = size / REFERENCE_SIZE
    flow = np.empty((2, size, size), dtype=np.float32)
    flow[0], flow[1] = BACKGROUND_VELOCITY[0] * scale, BACKGROUND_VELOCITY[1] * scale
    (x0, y0), (x1, y1) = object_centre(i, size, frames), object_centre(i + 1, size, frames)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    inside = np.hypot(xs - x0, ys - y0) < OBJECT_RADIUS * size
    flow[0][inside], flow[1][inside] = x1 - x0, y1 - y0
    return flow


def make_clip(path: Path = DEFAULT_OUT, size: int = REFERENCE_SIZE, frames: int = 25, fps: int = 8, crf: int = 20) -> Path:
    """Render and encode the clip with PyAV (H.264, yuv420p, single-threaded for reproducibility)."""
    import av  # PyAV ships with ComfyUI (and is in its requirements)

    if size % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "slow", "threads": "1", "tune": "film"}
        for t in range(frames):
            rgb = (render_frame(t, size, frames) * 255.0 + 0.5).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the CC0 sample clip of video-enhance-kit.")
    parser.add_argument("--out", type=Path, default=None, help=f"output path (default {DEFAULT_OUT.name}, or {TINY_OUT.name} with --tiny)")
    parser.add_argument("--size", type=int, default=None, help="width = height in pixels, even (default 256; 64 with --tiny)")
    parser.add_argument("--frames", type=int, default=None, help="frame count (default 25; 9 with --tiny)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate (default 8)")
    parser.add_argument("--tiny", action="store_true", help="the small test variant: 64 x 64, 9 frames")
    args = parser.parse_args(argv)
    size = args.size or (64 if args.tiny else REFERENCE_SIZE)
    frames = args.frames or (9 if args.tiny else 25)
    out = args.out or (TINY_OUT if args.tiny else DEFAULT_OUT)
    path = make_clip(out, size=size, frames=frames, fps=args.fps)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB, {frames} frames, {size}x{size}, {args.fps} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
