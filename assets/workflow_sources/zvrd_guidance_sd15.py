"""Example workflow: ZVRD flicker reduction for frame-by-frame SD1.5 refinement (all sampler-side tools + SLR attention)."""

TITLE = "ZVRD: flicker-free frame-by-frame SD1.5 refinement (guidance, shared noise, early stop, SLR attention)"
DESCRIPTION = """
Refines every frame of the sample clip with **SD1.5** (SDEdit, denoise 0.5) as one batch, with ZVRD's four
anti-flicker tools, and scores the result against the input with the **Video Quality Report**:

- **Estimate Optical Flow** once on the input; every ZVRD node reuses it.
- **SLR Temporal Attention**: the decoder's self-attention looks at neighbouring frames and along motion trajectories.
- **Temporal Consistency Guider** wraps the CFG guider: each step's x0 prediction is pulled towards the previous
  frame warped by the flow (last 30 % of steps) - add a *CLIP Vision Loader* into `clip_vision` for the semantic term.
- **Shared Noise** + **Shared Noise Sampler**: one initial noise and one per-step noise for all frames, blended
  along the motion (Eq. 11) - static areas get identical details in every frame.
- **Early Stop Sampler**: stops after 90 % of the steps and returns that step's x0 (skips the late, flickery detail).

Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`. For better flow put RAFT weights in
`models/optical_flow` and pick them in Estimate Optical Flow. Lower **guidance_scale** or raise **stop_fraction**
if the result gets soft; lower **share_weight** if textures stick to the screen on fast pans.
"""

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "VEK_EstimateOpticalFlow", "inputs": {"images": ["3", 0], "method": "auto", "raft_weights": "none"}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise, flicker"}},
    "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
    "8": {"class_type": "VEK_SLRTemporalAttention", "inputs": {
        "model": ["1", 0], "cross_neighbour": True, "trajectory": True, "trajectory_start": 0.9, "output_blocks": "all",
        "search_window": 5, "boundary": "clamp", "flow": ["4", 0]}},
    "9": {"class_type": "CFGGuider", "inputs": {"model": ["8", 0], "positive": ["5", 0], "negative": ["6", 0], "cfg": 7.5}},
    "10": {"class_type": "VEK_TemporalConsistencyGuider", "inputs": {
        "guider": ["9", 0], "guidance_scale": 0.2, "semantic_weight": 1.0, "pixel_start": 0.7, "loss_space": "latent",
        "flow": ["4", 0]}},
    "11": {"class_type": "VEK_SharedNoise", "inputs": {
        "noise_seed": 42, "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["4", 0],
        "frame_weights": ""}},
    "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
    "13": {"class_type": "VEK_SharedNoiseSampler", "inputs": {
        "sampler": ["12", 0], "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["4", 0]}},
    "14": {"class_type": "VEK_EarlyStopSampler", "inputs": {"sampler": ["13", 0], "stop_step": 0, "stop_sigma": 0.0,
                                                           "stop_fraction": 0.9}},
    "15": {"class_type": "BasicScheduler", "inputs": {"model": ["8", 0], "scheduler": "normal", "steps": 20, "denoise": 0.5}},
    "16": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["11", 0], "guider": ["10", 0], "sampler": ["14", 0], "sigmas": ["15", 0], "latent_image": ["7", 0]}},
    "17": {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["1", 2]}},
    "18": {"class_type": "CreateVideo", "inputs": {"images": ["17", 0], "fps": ["3", 2]}},
    "19": {"class_type": "SaveVideo", "inputs": {"video": ["18", 0], "filename_prefix": "video/zvrd_guidance_sd15",
                                                 "format": "auto", "codec": "auto"}},
    "20": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["17", 0], "reference": ["3", 0], "flow": ["4", 0], "psnr_ssim": True, "mse_low": True,
        "spatial_frequency": True, "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 256}},
    "21": {"class_type": "PreviewAny", "inputs": {"source": ["20", 0]}},
    "22": {"class_type": "PreviewImage", "inputs": {"images": ["20", 1]}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Input video and flow", "nodes": ["2", "3", "4", "7"], "color": "#3f789e"},
    {"title": "ZVRD", "nodes": ["8", "10", "11", "13", "14"], "color": "#8a5a2b"},
    {"title": "Quality report", "nodes": ["20", "21", "22"], "color": "#4f6f3f"},
]
