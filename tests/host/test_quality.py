"""Video Quality Report (VEK_VideoQualityReport) inside real ComfyUI."""

import pytest
import torch
from video_enhance_kit.host import (
    ComfyHost,
    describe_missing_comfyui,
    find_comfyui,
)

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

from video_enhance_kit.utils import metrics as M

NODE = "VEK_VideoQualityReport"
OFF = {"psnr_ssim": False, "mse_low": False, "spatial_frequency": False, "warping_error": False}


@pytest.fixture(scope="module")
def host():
    torch.set_num_threads(1)
    return ComfyHost.start()


@pytest.fixture(scope="module")
def flow_of(host):
    """A zero-motion VideoFlow built from the pack as ComfyUI loaded it (the class the node sees)."""
    VideoFlow = host.pack_module("utils.flow").VideoFlow

    def make(frames, h, w):
        z = torch.zeros(frames - 1, 2, h, w)
        ones = torch.ones(frames - 1, 1, h, w)
        return VideoFlow(z, z.clone(), ones, ones.clone())

    return make


@pytest.fixture
def clips():
    g = torch.Generator().manual_seed(7)
    ref = torch.rand(4, 24, 32, 3, generator=g)
    video = (ref + 0.08 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    candidate = (ref + 0.02 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    return video, ref, candidate


def _row(report: str, label: str) -> list[str]:
    for line in report.splitlines():
        if line.startswith(label):
            return line[len(label):].split()
    raise AssertionError(f"no row {label!r} in\n{report}")


def test_report_numbers_match_core_metrics(host, clips):
    from video_enhance_kit.nodes.quality import fmt

    video, ref, candidate = clips
    before = [t.clone() for t in clips]
    report, _plot = host.run_node(NODE, video=video, reference=ref, candidate=candidate, warping_error=False)
    v, r, c = (x.movedim(-1, 1) for x in (video, ref, candidate))
    psnr_row = _row(report, "PSNR (dB)")
    assert psnr_row[0] == fmt(float(M.psnr(v, r))) and psnr_row[1] == fmt(float(M.psnr(c, r)))
    assert psnr_row[3] == "candidate"  # less noise scores higher
    assert _row(report, "SSIM")[:2] == [fmt(float(M.ssim(v, r))), fmt(float(M.ssim(c, r)))]
    assert _row(report, "MSE_l (nu=0.5)")[0] == fmt(float(M.mse_low(v, r, 0.5)))
    assert _row(report, "MSE_l (nu=0.5)")[3] == "candidate"
    assert _row(report, "SF")[-1] == fmt(float(M.spatial_frequency(r)))  # reference column
    assert "WE" not in report.split("\n\n")[0]
    for a, b in zip(before, clips):
        assert torch.equal(a, b)  # inputs untouched


def test_identical_video_scores_perfectly(host, clips):
    _, ref, _ = clips
    report, _ = host.run_node(NODE, video=ref, reference=ref, warping_error=False)
    assert _row(report, "PSNR (dB)")[0] == "inf"
    assert _row(report, "SSIM")[0] == "1.0000"
    assert _row(report, "MSE_l (nu=0.5)")[0] == "0.0000"
    assert _row(report, "MSE")[0] == "0.0000"


def test_plot_and_ui(host, clips, flow_of):
    video, ref, candidate = clips
    out = host.run_node(NODE, video=video, reference=ref, candidate=candidate, flow=flow_of(4, 24, 32))
    report, plot = out
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3
    assert plot.shape[1] >= 400 and plot.shape[2] >= 800  # 2 x 2 panels
    assert 0.0 <= float(plot.min()) and float(plot.max()) <= 1.0
    blue = ((plot[..., 2] > 0.6) & (plot[..., 0] < 0.25)).sum()
    orange = ((plot[..., 0] > 0.8) & (plot[..., 2] < 0.15)).sum()
    assert blue > 100 and orange > 100  # both curves drawn
    assert list(out.ui["text"]) == [report]
    assert len(out.ui["images"]) == 1


def test_warping_error_with_a_given_flow(host, flow_of):
    ref = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(3)).expand(3, 16, 16, 3).clone()
    video = ref.clone()
    video[2] = (video[2] + 0.1).clamp(max=1.0)  # flicker on the last frame
    report, _ = host.run_node(NODE, video=video, reference=ref, flow=flow_of(3, 16, 16))
    expected = float(M.warping_error(video.movedim(-1, 1), torch.zeros(2, 2, 16, 16)))
    we = _row(report, "WE x100")
    from video_enhance_kit.nodes.quality import fmt

    assert we[0] == fmt(100 * expected) and expected > 1e-3
    assert float(we[-1]) < 1e-9  # the static reference has no warping error (float32 remap rounding only)
    assert "from the 'flow' input" in report
    # a flow at half resolution is resized to the video
    half, _ = host.run_node(NODE, video=video, reference=ref, flow=flow_of(3, 8, 8))
    assert _row(half, "WE x100")[0] == we[0]


def test_flow_is_estimated_when_not_connected(host):
    g = torch.Generator().manual_seed(5)
    canvas = torch.rand(3, 40, 48, generator=g)
    ref = torch.stack([canvas[:, 4:28, 2 + i : 34 + i] for i in range(4)]).movedim(1, -1)  # panning 1 px / frame
    noisy = (ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    report, _ = host.run_node(NODE, video=noisy, reference=ref, psnr_ssim=False, mse_low=False, spatial_frequency=False)
    assert "estimated from the reference" in report
    video_we, ref_we = float(_row(report, "WE x100")[0]), float(_row(report, "WE x100")[-1])
    assert video_we > 5 * ref_we  # the flickering copy has a much larger warping error than the clean pan


def test_single_frame_reports_we_na(host, clips):
    video, ref, _ = clips
    report, _ = host.run_node(NODE, video=video[:1], reference=ref[:1])
    assert _row(report, "WE x100")[0] == "n/a"
    assert "at least 2 frames" in report


@pytest.mark.parametrize(
    "change, name",
    [
        (lambda v, r, c: {"video": v[:3], "reference": r}, "video"),
        (lambda v, r, c: {"video": v[:, :16], "reference": r}, "video"),
        (lambda v, r, c: {"video": v, "reference": r, "candidate": c[:2]}, "candidate"),
        (lambda v, r, c: {"video": v, "reference": r[0]}, "reference"),
        (lambda v, r, c: {"video": v, "reference": r, "flow": "zero flow of 3 frames"}, "flow"),
        (lambda v, r, c: {"video": v, "reference": r, **OFF}, "psnr_ssim"),
        (lambda v, r, c: {"video": v, "reference": r, "ssim_window": 10}, "ssim_window"),
        (lambda v, r, c: {"video": v, "reference": r, "cutoff": 0.0}, "cutoff"),
        (lambda v, r, c: {"video": v, "reference": r, "cutoff": 1.5}, "cutoff"),
        (lambda v, r, c: {"video": v * float("nan"), "reference": r}, "video"),
    ],
)
def test_bad_inputs_name_the_input(host, clips, flow_of, change, name):
    inputs = change(*clips)
    if inputs.get("flow") == "zero flow of 3 frames":
        inputs["flow"] = flow_of(3, 24, 32)  # the clips have 4 frames
    with pytest.raises(Exception, match=f"input '{name}'") as err:
        host.run_node(NODE, **inputs)
    assert type(err.value).__name__ == "InputError"


def test_resize_to_reference_scores_an_upscaled_video(host):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 32), indexing="ij")
    ref = torch.stack([0.5 + 0.3 * torch.sin(6 * xx + i) * torch.cos(4 * yy) for i in range(3)])[..., None].expand(3, 24, 32, 3)
    up = torch.nn.functional.interpolate(ref.movedim(-1, 1), scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1).movedim(1, -1)
    with pytest.raises(Exception, match="input 'video'.*resize_to_reference"):
        host.run_node(NODE, video=up, reference=ref, warping_error=False)
    report, _ = host.run_node(NODE, video=up, reference=ref, warping_error=False, resize_to_reference=True)
    assert float(_row(report, "PSNR (dB)")[0]) > 35  # a smooth image survives up- then down-scaling
    assert float(_row(report, "SSIM")[0]) > 0.99
    with pytest.raises(Exception, match="input 'candidate'.*frames"):
        host.run_node(NODE, video=up, reference=ref, candidate=up[:2], warping_error=False, resize_to_reference=True)


def test_identical_frames_do_not_make_the_mean_psnr_inf(host, clips):
    video, ref, _ = clips
    video = video.clone()
    video[0] = ref[0]  # e.g. a key frame passed through unchanged
    report, _ = host.run_node(NODE, video=video, reference=ref, warping_error=False)
    expected = float(M.psnr_per_frame(video[1:].movedim(-1, 1), ref[1:].movedim(-1, 1)).mean())
    from video_enhance_kit.nodes.quality import fmt

    assert _row(report, "PSNR (dB)")[0] == fmt(expected)
    assert "1 frame(s) identical to the reference" in report


class _StandInClipVision:
    """CLIP vision's encode_image interface: a fixed random projection of the 8x8-pooled frame as the image embedding."""

    def __init__(self):
        self.weight = torch.randn(3 * 64, 32, generator=torch.Generator().manual_seed(0))
        self.calls = []

    def encode_image(self, image, crop=True):
        self.calls.append((tuple(image.shape), crop))
        pooled = torch.nn.functional.adaptive_avg_pool2d(image.movedim(-1, 1), 8).flatten(1)
        return {"image_embeds": pooled @ self.weight}


def _pan(frames, speed, size=32, seed=11):
    """IMAGE of a smooth texture panning right by ``speed`` px per frame."""
    g = torch.Generator().manual_seed(seed)
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 24, generator=g), size=(size, 96), mode="bicubic",
                                          align_corners=False).clamp(0, 1)
    return torch.cat([tex[..., 40 - i * speed: 40 - i * speed + size] for i in range(frames)]).movedim(1, -1).contiguous()


def test_fs_and_ofme_are_off_by_default_and_the_report_is_unchanged(host, clips):
    video, ref, candidate = clips
    before, _ = host.run_node(NODE, video=video, reference=ref, candidate=candidate)
    off, _ = host.run_node(NODE, video=video, reference=ref, candidate=candidate, frame_similarity=False, flow_map_error=False,
                           clip_vision=_StandInClipVision())
    assert off == before and "FS" not in before and "OFME" not in before


def test_frame_similarity_with_clip_vision_and_without(host):
    still = _pan(4, 0)
    moving = _pan(4, 3)
    vision = _StandInClipVision()
    report, _ = host.run_node(NODE, video=still, reference=moving, candidate=moving, frame_similarity=True, clip_vision=vision,
                              **{k: False for k in OFF})
    fs = _row(report, "FS")
    assert fs[0] == "1.0000"  # identical frames: FS = 1
    assert len(vision.calls) == 3 and all(crop is False for _, crop in vision.calls)  # video, candidate, reference; whole frames
    expected = float(M.frame_similarity(vision.encode_image(moving)["image_embeds"]))
    from video_enhance_kit.nodes.quality import fmt

    assert fs[1] == fmt(expected) and fs[-1] == fmt(expected) and expected < 1.0
    assert fs[3] == "video"
    absent, _ = host.run_node(NODE, video=still, reference=moving, frame_similarity=True, **{k: False for k in OFF})
    assert _row(absent, "FS")[0] == "n/a" and "no clip_vision connected" in absent


def test_flow_map_error_is_zero_on_the_reference_and_ordered_by_motion(host):
    ref = _pan(4, 1)
    report, _ = host.run_node(NODE, video=ref, reference=ref, candidate=_pan(4, 3), flow_map_error=True, psnr_ssim=False,
                              mse_low=False, spatial_frequency=False, warping_error=False)
    ofme = _row(report, "OFME (px)")
    assert ofme[0] == "0.0000" and float(ofme[1]) > 0.5 and ofme[3] == "video"
    faster, _ = host.run_node(NODE, video=_pan(4, 2), reference=ref, candidate=_pan(4, 3), flow_map_error=True,
                              **{k: False for k in OFF})
    two, three = (float(v) for v in _row(faster, "OFME (px)")[:2])
    print(f"\nOFME against a 1 px/frame pan: 2 px/frame {two:.3f}, 3 px/frame {three:.3f}")
    assert 0 < two < three
    assert "WE x100" not in faster  # OFME alone computes no warping error
    short, _ = host.run_node(NODE, video=ref[:1], reference=ref[:1], flow_map_error=True, **{k: False for k in OFF})
    assert _row(short, "OFME (px)")[0] == "n/a"


def test_bad_clip_vision_names_the_input(host, clips):
    video, ref, _ = clips
    with pytest.raises(Exception, match="input 'clip_vision'"):
        host.run_node(NODE, video=video, reference=ref, frame_similarity=True, clip_vision="not a model")
