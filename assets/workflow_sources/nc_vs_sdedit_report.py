"""Example workflow: plain SDEdit versus NC-SDEdit on the same input, scored by the Video Quality Report."""

TITLE = "SDEdit vs NC-SDEdit, side by side in the Video Quality Report"
DESCRIPTION = """
Runs the same refinement twice with **NC-SDEdit Refine** (SD1.5, denoise 0.6, 30 steps, same seed):
once with **iterations 0** (plain SDEdit, exactly what KSampler gives) and once with **iterations 3**
(Noise Calibration). The **Video Quality Report** scores SDEdit as `video` and NC-SDEdit as `candidate`
against the upscaled input: expect a lower **MSE_l** (content kept) and a higher **SSIM** for NC-SDEdit,
with D_SF showing how much detail each added.

Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`.
"""

_REFINE = {"model": ["1", 0], "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0],
           "seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "normal", "denoise": 0.6,
           "cutoff": 1.0, "mask": "ideal_reference", "dims": "2d (per frame)", "calibrate_with": "guided (cfg)"}

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    "8": {"class_type": "VEK_NCSDEditRefine", "inputs": {**_REFINE, "iterations": 0}, "_meta": {"title": "SDEdit (iterations 0)"}},
    "9": {"class_type": "VEK_NCSDEditRefine", "inputs": {**_REFINE, "iterations": 3}, "_meta": {"title": "NC-SDEdit (iterations 3)"}},
    "10": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
    "12": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["10", 0], "reference": ["4", 0], "candidate": ["11", 0], "psnr_ssim": True, "mse_low": True,
        "spatial_frequency": True, "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 256}},
    "13": {"class_type": "PreviewAny", "inputs": {"source": ["12", 0]}},
    "14": {"class_type": "PreviewImage", "inputs": {"images": ["12", 1]}},
    "15": {"class_type": "CreateVideo", "inputs": {"images": ["11", 0], "fps": ["3", 2]}},
    "16": {"class_type": "SaveVideo", "inputs": {"video": ["15", 0], "filename_prefix": "video/nc_sdedit",
                                                 "format": "auto", "codec": "auto"}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "SDEdit vs NC-SDEdit", "nodes": ["8", "9"], "color": "#8a5a2b"},
    {"title": "Scores", "nodes": ["12", "13", "14"], "color": "#3f789e"},
]
