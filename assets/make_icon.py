"""Make the pack's registry icon ``assets/icon.png`` (256 x 256 PNG, deterministic, drawn with Pillow).

pyproject.toml's ``[tool.comfy] Icon`` points at this file. The picture: a film strip whose three frames
go from blocky (low resolution) to sharp, with a four-point sparkle: video enhancement. Every pixel comes
from the shapes below (no fonts, no third-party material); licence as the sample clip: CC0 1.0.
It is drawn at 4x and reduced with a Lanczos filter (smooth edges), so the same Pillow gives the same pixels.

Usage::

    python assets/make_icon.py                  # assets/icon.png
    python assets/make_icon.py --size 128 --out /tmp/icon.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "icon.png"
SIZE = 256
SCALE = 4  # supersampling factor
TOP, BOTTOM = (30, 27, 75), (15, 118, 110)  # indigo -> teal background
STRIP, HOLE = (17, 17, 24), (235, 235, 240)
SPARKLE = (253, 224, 71)


def gradient(size: int) -> Image.Image:
    """A vertical TOP -> BOTTOM gradient, ``size`` x ``size`` RGB."""
    column = Image.new("RGB", (1, size))
    for y in range(size):
        t = y / (size - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM)))
    return column.resize((size, size), Image.NEAREST)


def scene(x: float, y: float) -> tuple[int, int, int]:
    """The picture inside the frames at (x, y) in 0..1: sky, sun and hills (an analytic image)."""
    if (x - 0.7) ** 2 + (y - 0.3) ** 2 < 0.03:
        return (250, 204, 21)
    if y > 0.62 + 0.12 * ((x * 3.1) % 1.0 - 0.5) ** 2 * 4 - 0.1:
        return (22, 163, 74)
    return (56, 189, 248)


def frame_image(w: int, h: int, blocks: int) -> Image.Image:
    """The scene sampled on ``blocks`` x ``blocks`` cells (blocky) or per pixel (``blocks`` = 0)."""
    img = Image.new("RGB", (w, h))
    for j in range(h):
        for i in range(w):
            u, v = (i + 0.5) / w, (j + 0.5) / h
            if blocks:
                u, v = (int(u * blocks) + 0.5) / blocks, (int(v * blocks) + 0.5) / blocks
            img.putpixel((i, j), scene(u, v))
    return img


def film_strip(canvas: Image.Image, s: int) -> None:
    """A horizontal strip with sprocket holes and three frames, blocky to sharp, left to right."""
    draw = ImageDraw.Draw(canvas)
    top, bottom = int(0.30 * s), int(0.74 * s)
    draw.rectangle([0, top, s, bottom], fill=STRIP)
    hole_w, hole_h = int(0.045 * s), int(0.035 * s)
    for k in range(9):
        x = int((0.04 + k * 0.115) * s)
        for y in (top + int(0.02 * s), bottom - int(0.02 * s) - hole_h):
            draw.rounded_rectangle([x, y, x + hole_w, y + hole_h], radius=hole_h // 3, fill=HOLE)
    fw, fh = int(0.27 * s), int(0.30 * s)
    for k, blocks in enumerate((5, 10, 0)):
        x, y = int((0.045 + k * 0.315) * s), top + int(0.07 * s)
        canvas.paste(frame_image(fw // SCALE, fh // SCALE, blocks).resize((fw, fh), Image.NEAREST if blocks else Image.BICUBIC), (x, y))


def sparkle(canvas: Image.Image, cx: float, cy: float, r: float) -> None:
    """A four-point star centred at (cx, cy) with arm length r (pixels)."""
    draw = ImageDraw.Draw(canvas)
    w = r * 0.28
    draw.polygon([(cx, cy - r), (cx + w, cy - w), (cx + r, cy), (cx + w, cy + w), (cx, cy + r), (cx - w, cy + w), (cx - r, cy), (cx - w, cy - w)],
                 fill=SPARKLE)


def make_icon(size: int = SIZE) -> Image.Image:
    """The icon as an RGBA image of ``size`` x ``size`` (rounded corners transparent)."""
    s = size * SCALE
    canvas = gradient(s)
    film_strip(canvas, s)
    sparkle(canvas, 0.80 * s, 0.17 * s, 0.12 * s)
    sparkle(canvas, 0.63 * s, 0.10 * s, 0.05 * s)
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, s - 1, s - 1], radius=int(0.18 * s), fill=255)
    icon = canvas.convert("RGBA")
    icon.putalpha(mask)
    return icon.resize((size, size), Image.LANCZOS)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    make_icon(args.size).save(args.out, format="PNG", optimize=True)
    print(f"{args.out}: {args.size}x{args.size}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
