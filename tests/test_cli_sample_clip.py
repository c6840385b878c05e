"""The bundled sample clip: size, format, and that its motion is the documented ground truth."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from video_enhance_kit.utils.warp import warp

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "vek_sample.mp4"


def load_script():
    spec = importlib.util.spec_from_file_location("make_sample_clip", ROOT / "assets" / "make_sample_clip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_clip_is_small_and_cc0():
    assert CLIP.is_file() and CLIP.stat().st_size < 1024 * 1024
    assert (ROOT / "assets" / "vek_sample_tiny.mp4").stat().st_size < 100 * 1024
    assert "CC0" in (ROOT / "assets" / "make_sample_clip.py").read_text()


@pytest.mark.parametrize("size, bound", [(64, 0.6), (256, 0.3)])
def test_rendered_motion_matches_true_flow(size, bound):
    """Frame i+1 warped back by the documented forward flow reproduces frame i better than any nearby flow."""
    torch.set_num_threads(1)
    mod = load_script()
    i = 3
    f0, f1 = mod.render_frame(i, size), mod.render_frame(i + 1, size)
    x1 = torch.from_numpy(f1).permute(2, 0, 1)[None].float()
    inner = (slice(4, -4), slice(4, -4))

    def error(flow):
        warped = warp(x1, torch.from_numpy(flow)[None])[0].permute(1, 2, 0).numpy()
        return np.abs(warped - f0)[inner].mean()

    flow = mod.true_flow(i, size)
    assert flow.shape == (2, size, size)
    best = error(flow)
    for dx, dy in ((0.3, 0), (-0.3, 0), (0, 0.3), (0, -0.3)):
        shifted = flow.copy()
        shifted[0] += dx
        shifted[1] += dy
        assert best < 0.9 * error(shifted)
    assert best < bound * np.abs(f1 - f0)[inner].mean()  # what is left is bilinear interpolation error


def test_decoded_clip_format_and_motion():
    av = pytest.importorskip("av")
    with av.open(str(CLIP)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == 8
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 25 and frames[0].shape == (256, 256, 3)
    mod = load_script()
    clip = np.stack(frames).astype(np.float32) / 255
    ref = np.stack([mod.render_frame(t) for t in (0, 12, 24)]).astype(np.float32)
    assert np.abs(clip[[0, 12, 24]] - ref).mean() < 0.02  # encoding is faithful


def test_script_is_deterministic(tmp_path):
    pytest.importorskip("av")
    mod = load_script()
    a = mod.make_clip(tmp_path / "a.mp4", size=32, frames=5)
    b = mod.make_clip(tmp_path / "b.mp4", size=32, frames=5)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with pytest.raises(ValueError, match="even"):
        mod.make_clip(tmp_path / "c.mp4", size=33, frames=2)
