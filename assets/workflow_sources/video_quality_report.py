"""Example workflow: score a degraded copy of the sample clip (and an attempted fix) with the Video Quality Report."""

TITLE = "Video Quality Report: blurred vs re-sharpened"
DESCRIPTION = """
Loads the sample clip, blurs it (**video**) and sharpens the blurred copy again (**candidate**), then
the **Video Quality Report** scores both against the original (**reference**): MSE, PSNR, SSIM, the
NC paper's low-frequency MSE_l, spatial frequency D_SF (detail: negative = blurrier than the
reference) and the warping error WE (flicker; the flow is estimated from the reference, at
`flow_resolution` px). The table shows both means, `cand - video` and which one is better; the
plot shows the per-frame curves.

Use it to compare two settings of any graph: send one result to `video`, the other to `candidate`,
and the input frames to `reference`. No model to download.
"""

PROMPT = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 2, "sigma": 1.0},
          "_meta": {"title": "Degrade: blur"}},
    "4": {"class_type": "ImageSharpen", "inputs": {"image": ["3", 0], "sharpen_radius": 2, "sigma": 1.0, "alpha": 0.2},
          "_meta": {"title": "Attempted fix: sharpen"}},
    "5": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["3", 0], "reference": ["2", 0], "candidate": ["4", 0], "psnr_ssim": True, "mse_low": True,
        "spatial_frequency": True, "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 128}},
    "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}, "_meta": {"title": "Report"}},
    "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}, "_meta": {"title": "Per-frame curves"}},
}

GROUPS = [
    {"title": "Input and degradations", "nodes": ["1", "2", "3", "4"], "color": "#3f789e"},
    {"title": "Scores", "nodes": ["5", "6", "7"], "color": "#8a6a3f"},
]
