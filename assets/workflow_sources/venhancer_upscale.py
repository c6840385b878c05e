"""Example workflow: VEnhancer space-time super-resolution of a clip (LoadVideo -> VEnhancer Upscale -> SaveVideo)."""

# The official positive suffix and negative prompt, from the sampler module (one source of truth).
from video_enhance_kit.samplers.venhancer import NEGATIVE_PROMPT, POSITIVE_SUFFIX

TITLE = "VEnhancer: 4x resolution, 3x frame rate"
DESCRIPTION = """
Generative space-time super-resolution with the official **VEnhancer** weights (UNet + video ControlNet),
loaded into this pack's own implementation and managed by ComfyUI like any model.

**Download** (the missing-models dialog offers them):
- `venhancer_v2.pt` (8.2 GB, fp32; or `venhancer_paper.pt` for v1, or an fp16 safetensors conversion)
  from huggingface.co/jwhejwhe/VEnhancer -> **ComfyUI/models/venhancer/**
- the SD 2.x text encoder, OpenCLIP ViT-H-14 (laion2b_s32b_b79k, `model.safetensors` of
  huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79k) saved as
  `open_clip_vit_h_14_laion2b_s32b_b79k.safetensors` -> **models/text_encoders/** (CLIPLoader type stable_diffusion)
- the SD VAE `vae-ft-mse-840000-ema-pruned.safetensors` -> **models/vae/**

**Settings**: up_scale 4 (output area kept between 1.5x 720p and 2048x1152), target_fps 24 (the 8 fps
sample gets 2 new frames per gap), noise_aug 200 (higher = more generative, lower = more faithful),
s_cond 8, cfg 7.5, fast solver (14 model calls per window), seed 666: the authors' defaults. The
positive prompt ends with the official quality suffix; the negative is the official one.
Clips longer than 32 output frames run in overlapping windows, so memory stays flat with length.
"""

PROMPT = {
    "1": {"class_type": "VEK_VEnhancerModelLoader", "inputs": {"ckpt_name": "venhancer_v2.pt", "dtype": "auto"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_vit_h_14_laion2b_s32b_b79k.safetensors",
                                                  "type": "stable_diffusion", "device": "default"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}},
    "4": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a white disc orbiting over a colourful textured surface" + POSITIVE_SUFFIX},
          "_meta": {"title": "Positive (prompt + official suffix)"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": NEGATIVE_PROMPT},
          "_meta": {"title": "Negative (official)"}},
    "8": {"class_type": "VEK_VEnhancerUpscale", "inputs": {
        "venhancer_model": ["1", 0], "images": ["5", 0], "fps": ["5", 2], "positive": ["6", 0], "negative": ["7", 0],
        "vae": ["3", 0], "up_scale": 4.0, "resolution_rule": "official", "target_fps": 24.0, "frame_interpolation": 0,
        "noise_aug": 200, "s_cond": 8.0, "cfg": 7.5, "solver_mode": "fast", "steps": 15, "seed": 666,
        "chunk_length": 32, "chunk_overlap": 0.5, "padding": "official"}},
    "9": {"class_type": "SaveVideo", "inputs": {"video": ["8", 2], "filename_prefix": "video/venhancer",
                                                "format": "auto", "codec": "auto"}},
}

MODELS = {
    "1": [{"name": "venhancer_v2.pt", "directory": "venhancer",
           "url": "https://huggingface.co/jwhejwhe/VEnhancer/resolve/main/venhancer_v2.pt"}],
    "2": [{"name": "open_clip_vit_h_14_laion2b_s32b_b79k.safetensors", "directory": "text_encoders",
           "url": "https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79k/resolve/main/model.safetensors"}],
    "3": [{"name": "vae-ft-mse-840000-ema-pruned.safetensors", "directory": "vae",
           "url": "https://huggingface.co/stabilityai/sd-vae-ft-mse-original/resolve/main/vae-ft-mse-840000-ema-pruned.safetensors"}],
}

GROUPS = [
    {"title": "Models", "nodes": ["1", "2", "3"], "color": "#3f789e"},
    {"title": "Input clip", "nodes": ["4", "5"], "color": "#3f789e"},
]
