"""The pack loads into real ComfyUI and every node is well described (ids, categories, tooltips)."""

from __future__ import annotations

import pytest

PREFIX = "VEK_"
CATEGORY = "video-enhance-kit/"


@pytest.fixture(scope="module")
def registered(comfy_host):
    """Node ids the pack's registry lists (imported from ComfyUI's copy of the pack)."""
    registry = comfy_host.pack_module("nodes._registry")
    return [cls.GET_SCHEMA().node_id for cls in registry.all_nodes()]


def test_pack_imports_without_error(comfy_host):
    assert comfy_host.pack_errors == []
    assert comfy_host.pack_module_name and comfy_host.pack_module().__name__ == comfy_host.pack_module_name


def test_every_registry_node_is_registered_in_comfyui(comfy_host, registered):
    assert registered, "the pack registers no node"
    assert len(set(registered)) == len(registered), "duplicate node ids"
    assert sorted(comfy_host.pack_node_ids()) == sorted(registered)


def test_node_ids_and_categories(object_info, registered):
    for node_id in registered:
        info = object_info[node_id]
        assert node_id.startswith(PREFIX), node_id
        assert info["category"].startswith(CATEGORY), (node_id, info["category"])
        assert info["display_name"] and info["display_name"] != node_id, node_id


def test_every_node_has_a_description_and_every_input_a_tooltip(object_info, registered):
    missing = []
    for node_id in registered:
        info = object_info[node_id]
        if not str(info.get("description", "")).strip():
            missing.append(f"{node_id}: no description")
        for section in ("required", "optional"):
            for name, spec in (info["input"].get(section) or {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if not str(opts.get("tooltip", "")).strip():
                    missing.append(f"{node_id}.{name}: no tooltip")
    assert not missing, "\n".join(missing)


def test_object_info_includes_core_nodes(object_info):
    # the harness builds object_info the way the server does: core nodes are there too
    for core in ("KSampler", "SamplerCustomAdvanced", "LoadVideo", "CheckpointLoaderSimple", "UNETLoader"):
        assert core in object_info
    assert object_info["KSampler"]["input_order"]["required"][:2] == ["model", "seed"]


# ---- the harness itself (what every feature's host tests rely on) ----


def test_tiny_sd15_prompt_runs_and_reports(run_prompt, sd15_prompt):
    seen = []
    result = run_prompt(sd15_prompt(frames=2, size=32, steps=2), on_progress=lambda n, v, m: seen.append((n, v, m)))
    assert result.success and result.error is None
    images = result.outputs["7"]["images"]
    assert len(images) == 2  # one preview per frame
    assert set(result.timings) >= {"5", "6", "7"}
    assert ("5", 2, 2) in seen  # KSampler's progress bar reached its last step
    assert any(f.suffix == ".png" for f in result.files)
    assert any("CheckpointLoaderSimple.ckpt_name" in s for s in result.substitutions)


def test_failure_names_node_and_message(run_prompt, sd15_prompt):
    p = sd15_prompt(frames=1, size=32, steps=1)
    p["5"]["inputs"]["sampler_name"] = "no_such_sampler"
    result = run_prompt(p, check=False)
    assert not result.success
    assert result.error.node_id == "5" and result.error.node_type == "KSampler"
    assert "sampler_name" in result.error.message or "sampler_name" in str(result.node_errors)


def test_execution_error_is_reported_with_traceback(run_prompt, sd15_prompt):
    p = sd15_prompt(frames=1, size=32, steps=1)
    p["8"] = {"class_type": "ImageCrop", "inputs": {"image": ["6", 0], "width": 8, "height": 8, "x": 0, "y": 0}}
    p["9"] = {"class_type": "ImageBlend", "inputs": {"image1": ["6", 0], "image2": ["8", 0], "blend_factor": 0.5,
                                                     "blend_mode": "normal"}}
    p["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}
    result = run_prompt(p, check=False)
    # ImageBlend resizes image2 itself, so this one succeeds; a wrong-rank latent does not:
    assert result.success, result.error
    p2 = sd15_prompt(frames=1, size=32, steps=1)
    p2["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}}
    p2["4"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}}
    p2["8"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "nearest-exact",
                                                           "scale_by": 0.01}}
    p2["9"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}}
    p2["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}
    bad = run_prompt(p2, check=False)
    assert not bad.success
    assert bad.error.node_id in {"8", "9"} and bad.error.traceback


def test_run_node_executes_a_node_class_directly(run_node):
    import torch

    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    (out,) = run_node("LatentUpscaleBy", samples=latent, upscale_method="nearest-exact", scale_by=2.0)
    assert out["samples"].shape == (2, 4, 16, 16)
    assert latent["samples"].shape == (2, 4, 8, 8)


def test_tiny_wan_latent_sampling(comfy_host, run_prompt, wan_prompt):
    p = wan_prompt(frames=5, size=32, steps=2)
    for k in ("8", "9", "3"):
        del p[k]
    p["8"] = {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "vek_wan"}}
    result = run_prompt(p)
    assert any(f.suffix == ".latent" for f in result.files)
    from safetensors.torch import load_file

    latent = load_file(str(next(f for f in result.files if f.suffix == ".latent")))["latent_tensor"]
    assert tuple(latent.shape) == (1, 16, 2, 4, 4)
    assert "2 CLIPLoader.type: 'wan' -> 'sd3'" in result.substitutions


def test_tiny_models_are_detected_as_their_families(comfy_host, tiny_models):
    import comfy.model_detection
    import comfy.supported_models
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(tiny_models["vek-tiny-sd15.safetensors"]))
    config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(config) is comfy.supported_models.SD15
    wan = comfy.utils.load_torch_file(str(tiny_models["vek-tiny-wan21.safetensors"]))
    wconfig = comfy.model_detection.model_config_from_unet(wan, "")
    assert type(wconfig) is comfy.supported_models.WAN21_T2V
    assert wconfig.unet_config["dim"] == 128 and wconfig.unet_config["num_layers"] == 2
    assert sum(v.numel() for v in wan.values()) < 1.5e6


def test_tiny_model_builders_are_deterministic(comfy_host):
    from video_enhance_kit.host import tiny_models as tm

    a, b = tm.wan21_state_dict(), tm.wan21_state_dict()
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)
    t = tm.taesd_state_dict()
    assert any(k.startswith("taesd_decoder.") for k in t) and "vae_scale" in t


def torch_equal(x, y):
    import torch

    return torch.equal(x, y)


def test_run_node_progress_goes_to_the_callback(comfy_host, run_node):
    import torch

    seen = []
    comfy_host.node_progress = lambda node, value, total: seen.append((node, value, total))
    try:
        model, clip, vae = run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
        (pos,) = run_node("CLIPTextEncode", clip=clip, text="a ball")
        latent = {"samples": torch.zeros(1, 4, 4, 4)}
        (out,) = run_node("KSampler", model=model, seed=0, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal",
                          positive=pos, negative=pos, latent_image=latent, denoise=1.0)
    finally:
        comfy_host.node_progress = None
    assert out["samples"].shape == (1, 4, 4, 4) and torch.isfinite(out["samples"]).all()
    assert ("run_node", 2, 2) in seen
