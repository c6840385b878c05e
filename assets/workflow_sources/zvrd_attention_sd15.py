"""Example workflow: SDEdit refinement of a video with SD1.5, with and without ZVRD SLR temporal attention."""

TITLE = "ZVRD SLR temporal attention: less flicker from an image model"
DESCRIPTION = """
Refines the sample clip frame by frame with **SD1.5** (SDEdit: KSampler at denoise 0.6, 30 steps, same seed)
twice: with the plain model and with the model patched by **SLR Temporal Attention (ZVRD)**, whose decoder
self-attention looks at the neighbouring frames (cross-neighbour attention) and, in the last 10 % of the
schedule (`trajectory_start` 0.9), along motion trajectories corrected per token.

The **Video Quality Report** scores the plain result as `video` and the patched one as `candidate` against
the upscaled input, with the input's optical flow (**Estimate Optical Flow**) for the **warping error**:
lower WE = less flicker. **Visualize Flow** shows that flow.

The whole clip is one latent batch (one latent per frame): that is what lets the attention see other frames.
Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`. Optional: torchvision RAFT weights
in `models/optical_flow` (Estimate Optical Flow then uses RAFT).
"""

_SAMPLE = {"positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "seed": 42, "steps": 30, "cfg": 7.5,
           "sampler_name": "ddim", "scheduler": "normal", "denoise": 0.6}

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise, flicker"}},
    "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    "8": {"class_type": "VEK_SLRTemporalAttention", "inputs": {
        "model": ["1", 0], "cross_neighbour": True, "trajectory": True, "trajectory_start": 0.9, "output_blocks": "all",
        "search_window": 5, "boundary": "clamp", "trajectory_radius": 0}},
    "9": {"class_type": "KSampler", "inputs": {"model": ["1", 0], **_SAMPLE}, "_meta": {"title": "SDEdit (plain SD1.5)"}},
    "10": {"class_type": "KSampler", "inputs": {"model": ["8", 0], **_SAMPLE}, "_meta": {"title": "SDEdit + SLR temporal attention"}},
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
    "12": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
    "13": {"class_type": "VEK_EstimateOpticalFlow", "inputs": {"images": ["4", 0], "method": "auto", "raft_weights": "none"}},
    "14": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["11", 0], "reference": ["4", 0], "candidate": ["12", 0], "flow": ["13", 0], "psnr_ssim": True,
        "mse_low": True, "spatial_frequency": True, "warping_error": True, "cutoff": 0.5, "ssim_window": 11,
        "flow_resolution": 256}},
    "15": {"class_type": "PreviewAny", "inputs": {"source": ["14", 0]}},
    "16": {"class_type": "PreviewImage", "inputs": {"images": ["14", 1]}},
    "17": {"class_type": "VEK_VisualizeFlow", "inputs": {"flow": ["13", 0], "direction": "forward", "max_magnitude": 0.0, "occlusion_overlay": 0.6}},
    "18": {"class_type": "PreviewImage", "inputs": {"images": ["17", 0]}},
    "19": {"class_type": "CreateVideo", "inputs": {"images": ["12", 0], "fps": ["3", 2]}},
    "20": {"class_type": "SaveVideo", "inputs": {"video": ["19", 0], "filename_prefix": "video/zvrd_attention", "format": "auto", "codec": "auto"}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Without / with SLR temporal attention", "nodes": ["8", "9", "10"], "color": "#8a5a2b"},
    {"title": "Flow and scores", "nodes": ["13", "14", "15", "16", "17", "18"], "color": "#3f789e"},
]
