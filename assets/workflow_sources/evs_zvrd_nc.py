"""Example workflow: the EVS T2V Block inside SamplerCustomAdvanced, its T2I stages with ZVRD and Noise Calibration."""

TITLE = "EVS T2V Block in SamplerCustomAdvanced: SLR attention, temporal guidance, shared noise, Noise Calibration"
DESCRIPTION = """
The EVS composition (T2I + [T2V] + T2I) built from ComfyUI's standard sampling, so every T2I stage gets the
pack's other tools, and scored against the one-node **EVS Sampler** with the same settings:

- **T2I model**: SD1.5 patched by **SLR Temporal Attention** (cross-frame and trajectory attention on the flow),
  guided by the **Temporal Consistency Guider** (around CFGGuider), started from **Shared Noise** (one noise for all
  frames, blended along the flow). BasicScheduler: 20 steps of denoise 0.4 (= EVS Sampler's 50 steps at strength 0.4).
- **SAMPLER**: KSamplerSelect (ddim) -> **Noise Calibration** (calibrates the start of each T2I stage: t_I towards the
  input, t_T2V towards the block's output) -> **EVS T2V Block** (at t2v_at 0.2, halfway: the T2V model's 8-step
  schedule at strength 0.5).
- **Video Quality Report**: the plain EVS Sampler output as `video`, this graph's as `candidate`, against the input.

Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`. For the motion prior add an AnimateDiff motion
module to the **T2V model** (ComfyUI-AnimateDiff-Evolved, see the note); without it the graph still runs.
Swap the T2V side for Wan 2.1 by giving the block `t2i_vae` and `t2v_vae` (the video then needs 4k + 1 frames).
"""

_T2V = {"t2v_at": 0.2, "t2v_steps": 8, "t2v_strength": 0.5, "t2v_block_steps": 0, "t2v_sampler": "euler", "t2v_scheduler": "sgm_uniform",
        "t2v_cfg": 1.0, "sfi": False, "sfi_gamma": 0.8, "sfi_depth_min": 0.5, "sfi_depth_max": 1.0}

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
    "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
    "11": {"class_type": "VEK_EstimateOpticalFlow", "inputs": {"images": ["5", 0], "method": "auto", "raft_weights": "none"}},
    "12": {"class_type": "VEK_SLRTemporalAttention", "inputs": {
        "model": ["1", 0], "cross_neighbour": True, "trajectory": True, "trajectory_start": 0.9, "output_blocks": "all",
        "search_window": 5, "boundary": "clamp", "flow": ["11", 0]}},
    "13": {"class_type": "CFGGuider", "inputs": {"model": ["12", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 7.5}},
    "14": {"class_type": "VEK_TemporalConsistencyGuider", "inputs": {
        "guider": ["13", 0], "guidance_scale": 0.2, "semantic_weight": 1.0, "pixel_start": 0.7, "loss_space": "latent", "flow": ["11", 0]}},
    "15": {"class_type": "VEK_SharedNoise", "inputs": {
        "noise_seed": 42, "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["11", 0], "frame_weights": ""}},
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "ddim"}},
    "17": {"class_type": "VEK_NoiseCalibration", "inputs": {
        "sampler": ["16", 0], "iterations": 3, "cutoff": 1.0, "mask": "ideal_reference", "dims": "2d (per frame)",
        "calibrate_with": "guided (cfg)", "order": 2}},
    "18": {"class_type": "VEK_EVST2VBlock", "inputs": {
        "sampler": ["17", 0], "t2v_model": ["2", 0], "t2v_positive": ["8", 0], "t2v_negative": ["9", 0], **_T2V, "seed_offset": 1}},
    "19": {"class_type": "BasicScheduler", "inputs": {"model": ["12", 0], "scheduler": "ddim_uniform", "steps": 20, "denoise": 0.4}},
    "20": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["15", 0], "guider": ["14", 0], "sampler": ["18", 0], "sigmas": ["19", 0], "latent_image": ["10", 0]}},
    "21": {"class_type": "VAEDecode", "inputs": {"samples": ["20", 0], "vae": ["1", 2]}},
    "22": {"class_type": "VEK_EVSSampler", "inputs": {
        "t2i_model": ["1", 0], "t2i_positive": ["6", 0], "t2i_negative": ["7", 0],
        "t2v_model": ["2", 0], "t2v_positive": ["8", 0], "t2v_negative": ["9", 0],
        "seed": 42, "t2i_steps": 50, "t2i_strength": 0.4, "t2i_sampler": "ddim", "t2i_scheduler": "ddim_uniform", "t2i_cfg": 7.5,
        **_T2V, "t2v_enabled": True, "images": ["5", 0], "t2i_vae": ["1", 2]},
           "_meta": {"title": "EVS Sampler (plain, the same settings)"}},
    "23": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["22", 1], "reference": ["5", 0], "candidate": ["21", 0], "flow": ["11", 0], "psnr_ssim": True, "mse_low": True,
        "spatial_frequency": True, "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 256}},
    "24": {"class_type": "PreviewAny", "inputs": {"source": ["23", 0]}},
    "25": {"class_type": "PreviewImage", "inputs": {"images": ["23", 1]}},
    "26": {"class_type": "CreateVideo", "inputs": {"images": ["21", 0], "fps": ["4", 2]}},
    "27": {"class_type": "SaveVideo", "inputs": {"video": ["26", 0], "filename_prefix": "video/evs_zvrd_nc", "format": "auto", "codec": "auto"}},
}

_SD15 = {"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
         "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}
MODELS = {"1": [_SD15], "2": [_SD15]}

GROUPS = [
    {"title": "Input video and flow", "nodes": ["3", "4", "5", "10", "11"], "color": "#3f789e"},
    {"title": "T2I stages: SLR attention, temporal guidance, shared noise", "nodes": ["12", "13", "14", "15"], "color": "#8a5a2b"},
    {"title": "SAMPLER: Noise Calibration + EVS T2V Block", "nodes": ["16", "17", "18"], "color": "#6b4f8a"},
    {"title": "Plain EVS Sampler and the report", "nodes": ["22", "23", "24", "25"], "color": "#4f6f3f"},
]

NOTES = [{"text": (
    "**Where the AnimateDiff motion module goes** (custom node pack *ComfyUI-AnimateDiff-Evolved*):\n\n"
    "T2V checkpoint loader MODEL -> *Apply AnimateDiff Model* (`animatediff_lightning_8step_comfyui.safetensors`) -> "
    "*Use Evolved Sampling* -> **EVS T2V Block: t2v_model** and **EVS Sampler: t2v_model**.\n\n"
    "Order of the SAMPLER wrappers: Noise Calibration inside the block calibrates both T2I stages; put it after the block "
    "to calibrate only the first (see the README's table)."),
    "pos": (40, 900), "size": (520, 240)}]
