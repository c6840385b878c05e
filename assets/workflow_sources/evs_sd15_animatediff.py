"""Example workflow: EVS with SD1.5 as T2I and SD1.5 + an AnimateDiff motion module as T2V (one latent space)."""

TITLE = "EVS: SD1.5 detail + AnimateDiff motion (T2I + [T2V] + T2I)"
DESCRIPTION = """
Enhances the sample clip (upscaled 2x, as in the EVS paper) with **EVS Sampler**: the image model refines the
frames by SDEdit (50 steps, strength 0.4 = the last 20); once, at **t2v_at** 0.2, its predicted clean latent
runs through a **[T2V] block** (8-step schedule, strength 0.5 = 4 steps) and comes back to finish the T2I steps.
Both models share SD1.5's latent space, so there is no VAE round trip.

- Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints` (the paper uses the SD1.5
  fine-tune epiCRealism: any SD1.5 checkpoint works for both loaders).
- **The motion module**: install the custom node pack **ComfyUI-AnimateDiff-Evolved** (Kosinkadink) and
  put `animatediff_lightning_8step_comfyui.safetensors` (ByteDance/AnimateDiff-Lightning) in
  `models/animatediff_models`. Then insert *Load AnimateDiff Model* -> *Apply AnimateDiff Model* ->
  *Use Evolved Sampling* between the **T2V checkpoint loader** and **EVS Sampler's t2v_model** (see the note).
  Without it the T2V input is plain SD1.5 and the block adds no motion prior: the graph still runs.
- **t2v_at** earlier (larger) = more detail, more flicker; **t2v_strength** larger = less flicker, look drifts
  toward the video model (paper Fig. 7).
- Turn **sfi** on for styles the video model cannot make (deep layers with gamma 0.8, or shallow with 0.5).
"""

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
          "_meta": {"title": "T2I model (SD1.5)"}},
    "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
          "_meta": {"title": "T2V model: SD1.5 (+ AnimateDiff motion module here)"}},
    "3": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
    "5": {"class_type": "ImageScaleBy", "inputs": {"image": ["4", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "a smooth, consistent video, high quality"}},
    "9": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "flicker, low quality"}},
    "10": {"class_type": "VEK_EVSSampler", "inputs": {
        "t2i_model": ["1", 0], "t2i_positive": ["6", 0], "t2i_negative": ["7", 0],
        "t2v_model": ["2", 0], "t2v_positive": ["8", 0], "t2v_negative": ["9", 0],
        "seed": 42, "t2i_steps": 50, "t2i_strength": 0.4, "t2v_at": 0.2, "t2i_sampler": "ddim",
        "t2i_scheduler": "ddim_uniform", "t2i_cfg": 7.5, "t2v_steps": 8, "t2v_strength": 0.5, "t2v_block_steps": 0,
        "t2v_sampler": "euler", "t2v_scheduler": "sgm_uniform", "t2v_cfg": 1.0, "t2v_enabled": True,
        "sfi": False, "sfi_gamma": 0.8, "sfi_depth_min": 0.5, "sfi_depth_max": 1.0,
        "images": ["5", 0], "t2i_vae": ["1", 2]}},
    "11": {"class_type": "CreateVideo", "inputs": {"images": ["10", 1], "fps": ["4", 2]}},
    "12": {"class_type": "SaveVideo", "inputs": {"video": ["11", 0], "filename_prefix": "video/evs_sd15_animatediff",
                                                 "format": "auto", "codec": "auto"}},
}

_SD15 = {"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
         "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}
MODELS = {"1": [_SD15], "2": [_SD15]}

GROUPS = [
    {"title": "Input video", "nodes": ["3", "4", "5"], "color": "#3f789e"},
    {"title": "T2V model: add AnimateDiff here", "nodes": ["2", "8", "9"], "color": "#8a5a2b"},
]

NOTES = [{"text": (
    "**Where the AnimateDiff motion module goes** (custom node pack *ComfyUI-AnimateDiff-Evolved*):\n\n"
    "T2V checkpoint loader MODEL -> *Apply AnimateDiff Model* (motion model from *Load AnimateDiff Model*: "
    "`animatediff_lightning_8step_comfyui.safetensors`) -> *Use Evolved Sampling* (context options for clips "
    "longer than 16 frames) -> **EVS Sampler: t2v_model**.\n\n"
    "Keep t2v_steps 8 and t2v_cfg 1 for the 8-step Lightning model; sgm_uniform is its scheduler."),
    "pos": (40, 760), "size": (520, 240)}]
