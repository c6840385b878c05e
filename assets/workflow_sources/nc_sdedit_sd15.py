"""Example workflow: NC-SDEdit refinement of a video, frame by frame, with an SD1.5 model."""

TITLE = "NC-SDEdit: refine a video frame by frame with SD1.5, keeping its content"
DESCRIPTION = """
Upscales the sample clip 2x and refines every frame with **SD1.5** through **NC-SDEdit Refine**:
SDEdit at denoise 0.6 (t0 = 600/1000, 30 steps) with **Noise Calibration** (3 iterations, cutoff 1.0),
so the layout and colours of the input survive while the model adds detail.

- Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints` (or use any SD1.5 / SDXL checkpoint).
- **denoise**: higher fixes more artifacts but changes more content.
- **iterations**: 0 = plain SDEdit; 1-3 keep the content (more can oversaturate).
- **cutoff**: 1.0 keeps even fine texture; 0.5 lets the model change more detail.
"""

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    "8": {"class_type": "VEK_NCSDEditRefine", "inputs": {
        "model": ["1", 0], "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0],
        "seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "normal", "denoise": 0.6,
        "iterations": 3, "cutoff": 1.0, "mask": "ideal_reference", "dims": "2d (per frame)",
        "calibrate_with": "guided (cfg)"}},
    "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    "10": {"class_type": "CreateVideo", "inputs": {"images": ["9", 0], "fps": ["3", 2]}},
    "11": {"class_type": "SaveVideo", "inputs": {"video": ["10", 0], "filename_prefix": "video/nc_sdedit_sd15",
                                                 "format": "auto", "codec": "auto"}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Input video", "nodes": ["2", "3", "4", "7"], "color": "#3f789e"},
    {"title": "NC-SDEdit", "nodes": ["8"], "color": "#8a5a2b"},
]
