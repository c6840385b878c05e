"""Example workflow: plain SDEdit of a video with SD1.5, then Colour Correction against the input frames."""

TITLE = "Colour Correction: SDEdit's colour drift taken back to the input"
DESCRIPTION = """
Upscales the sample clip 2x and refines every frame with **SD1.5** by plain SDEdit (KSampler at
denoise 0.6), which adds detail but drifts in colour. **Colour Correction** (mode **wavelet**) takes
the low frequencies (colour, shading) from the input clip and the detail from the refined frames; the
source is the clip at its own size (the node resizes it to the result). The **Video Quality Report**
scores the refined frames (**video**) and the corrected ones (**candidate**) against the upscaled
input: MSE_l (low-frequency drift) falls, D_SF (detail) stays.

- Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`.
- **mode**: wavelet keeps the most detail; adain only fixes each channel's mean and contrast;
  histogram maps the value distribution (strongest).
- Works after any enhancer: VEnhancer Upscale, EVS Sampler, NC-SDEdit Refine, an upscale model.
"""

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    "8": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0],
        "seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "normal", "denoise": 0.6},
        "_meta": {"title": "SDEdit (KSampler, denoise 0.6)"}},
    "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    "10": {"class_type": "VEK_ColourCorrection", "inputs": {
        "result": ["9", 0], "source": ["3", 0], "mode": "wavelet", "strength": 1.0, "levels": 5}},
    "11": {"class_type": "CreateVideo", "inputs": {"images": ["10", 0], "fps": ["3", 2]}},
    "12": {"class_type": "SaveVideo", "inputs": {"video": ["11", 0], "filename_prefix": "video/colour_correction_sd15",
                                                 "format": "auto", "codec": "auto"}},
    "13": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["9", 0], "reference": ["4", 0], "candidate": ["10", 0], "psnr_ssim": True, "mse_low": True,
        "spatial_frequency": True, "warping_error": False, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 128}},
    "14": {"class_type": "PreviewAny", "inputs": {"source": ["13", 0]}, "_meta": {"title": "Report: SDEdit vs corrected"}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Input video", "nodes": ["2", "3", "4", "7"], "color": "#3f789e"},
    {"title": "SDEdit", "nodes": ["8", "9"], "color": "#8a5a2b"},
    {"title": "Colour Correction", "nodes": ["10", "11", "12"], "color": "#2b8a5a"},
    {"title": "Scores", "nodes": ["13", "14"], "color": "#8a6a3f"},
]
