"""Window length (and tile size) from free memory: VEnhancer's ``chunk_length`` "auto" (issue 13.3).

The cost model is linear: one model call on ``f`` frames of ``p`` latent pixels needs
``fixed_bytes + bytes_per_frame_pixel * f * p`` (weights and workspace + activations, which grow linearly in
frames x pixels with memory-efficient attention). ``bytes_per_frame_pixel`` is measured by the caller (a GPU
probe); everything here is pure arithmetic on plain numbers.

The pack's cost constant lives here (:data:`VALUES_PER_FRAME_PIXEL_CHANNEL`, with how it was obtained) and
:func:`bytes_per_frame_pixel` turns it into the cost of a given network and compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable

from ..utils.checks import InputError
from .venhancer import make_chunks
from .venhancer_windows import fit_tile

#: MEASURED (CPU, fp32, torch SDPA): the small random config of benchmarks/bench_venhancer_tiles.py (model_channels 32),
#: one windowed prediction (cfg 1, batch 1) on 9 frames of 48x48 latents: peak RSS above the RSS before (the
#: weights excluded) 139,960,320 bytes = 6,750 bytes per frame x latent pixel = 52.7 fp32 values per frame x pixel
#: x model channel (16x16: 30.2 MB, 32x32: 59.6 MB; the largest size is used: CPU attention grows faster than
#: linear there). Reproduce: ``python benchmarks/bench_venhancer.py --cost``.
VALUES_PER_FRAME_PIXEL_CHANNEL = 52.7
#: CHOSEN, not measured: memory kept free besides the activations (allocator fragmentation, cuDNN/attention workspaces).
HEADROOM_BYTES = 1 << 30


def bytes_per_frame_pixel(model_channels: int, element_size: int, batch: int = 2) -> float:
    """COMPUTED from the measured small-config constant: bytes per frame x latent pixel of one model call.

    Scaled linearly by the network's width (``model_channels``; the official 320) and the compute dtype's bytes
    (fp16/bf16: 2, also for fp8 storage), times ``batch`` (2: the conditional and unconditional pass in one call).
    For the official network in fp16: 52.7 * 320 * 2 * 2 = 67.5 KB (not measured on that network; the GPU section of
    benchmarks/bench_venhancer.py measures it).
    """
    return VALUES_PER_FRAME_PIXEL_CHANNEL * model_channels * element_size * batch


def call_bytes(bytes_per_frame_pixel: float, fixed_bytes: float, frames: int, pixels: int) -> float:
    """Memory of one model call on ``frames`` frames of ``pixels`` latent pixels: fixed + per frame x pixel."""
    return fixed_bytes + bytes_per_frame_pixel * frames * pixels


def longest_window(frames: int, interp: int, chunk_length: int, chunk_overlap: float = 0.5) -> int:
    """Frames in the longest official window for ``chunk_length`` (the last window may hold up to 1.33 windows)."""
    return max(b - a for a, b in make_chunks(frames, interp, chunk_length, chunk_overlap) or [(0, frames)])


def _tile_candidates(height: int, width: int, smallest: int, size_ok: Callable[[int, int], bool] | None):
    """Tiles (h, w) below the full latent, largest first: sides min(t, H) x min(t, W), rounded to what the network takes."""
    seen = set()
    for t in range(max(height, width) - 1, smallest - 1, -1):
        th, tw = min(t, height), min(t, width)
        if size_ok is not None:
            try:
                th, tw = fit_tile(th, tw, height, width, size_ok)
            except InputError:
                continue
        if (th, tw) not in seen and (th, tw) != (height, width) and min(th, tw) >= smallest:
            seen.add((th, tw))
            yield th, tw


def auto_window(
    free_bytes: float,
    bytes_per_frame_pixel: float,
    fixed_bytes: float,
    frames: int,
    height: int,
    width: int,
    tiles_allowed: bool,
    *,
    interp: int = 0,
    max_chunk_length: int | None = 32,
    chunk_overlap: float = 0.5,
    min_tile: int = 16,
    tile_overlap: int = 8,
    size_ok: Callable[[int, int], bool] | None = None,
) -> tuple[int, tuple[int, int] | None]:
    """(chunk_length, tile): the longest key-frame-aligned window that fits ``free_bytes``, then (with tiles) the largest tile.

    Windows are tried from ``max_chunk_length`` (official 32; None = the whole clip) down to ``interp + 2``;
    for each, the latent untiled, then (``tiles_allowed``) tiles from the largest down to ``min_tile`` (and
    above ``tile_overlap``). ``tile`` None = no tiles. Pass the result to ``plan_windows(chunk_length=, tile_size=)``.
    Raises InputError naming ``chunk_length`` when nothing fits.
    """
    if bytes_per_frame_pixel <= 0 or frames < 1 or height < 1 or width < 1:
        raise ValueError("bytes_per_frame_pixel, frames, height and width must be positive")
    top = frames if max_chunk_length is None else min(max_chunk_length, frames)
    top = max(top, interp + 2)
    smallest = max(min_tile, tile_overlap + 1)
    tried = set()
    for chunk in range(top, interp + 1, -1):
        f = longest_window(frames, interp, chunk, chunk_overlap)
        if f in tried:
            continue
        tried.add(f)
        if call_bytes(bytes_per_frame_pixel, fixed_bytes, f, height * width) <= free_bytes:
            return chunk, None
        if tiles_allowed:
            for th, tw in _tile_candidates(height, width, smallest, size_ok):
                if call_bytes(bytes_per_frame_pixel, fixed_bytes, f, th * tw) <= free_bytes:
                    return chunk, (th, tw)
    f = longest_window(frames, interp, interp + 2, chunk_overlap)
    pixels = smallest * smallest if tiles_allowed else height * width
    need = call_bytes(bytes_per_frame_pixel, fixed_bytes, f, pixels)
    raise InputError("chunk_length", f"even {f}-frame windows{' with ' + str(smallest) + '-pixel tiles' if tiles_allowed else ''} "
                     f"need {need / 2**30:.2f} GiB, {free_bytes / 2**30:.2f} GiB is free",
                     "lower the resolution (up_scale), turn tiles on, or free device memory (fp8 weights, other models off)")


__all__ = ["HEADROOM_BYTES", "VALUES_PER_FRAME_PIXEL_CHANNEL", "auto_window", "bytes_per_frame_pixel", "call_bytes", "longest_window"]
