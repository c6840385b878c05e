"""Tiny runs without ComfyUI: the features' TINY declarations, loader substitution, declared tiny models."""

import hashlib
import subprocess
import sys

import pytest
import torch
from video_enhance_kit.host import tiny, tiny_models
from video_enhance_kit.nodes import _registry

#: sha256 of the tiny VEnhancer file as nodes/venhancer.py built it before the declarations (issue 10).
TINY_VENHANCER_SHA256 = "966ed1fc34d1e61c4c28206d32946f591c6f7e6d520f4ae3e4b8214590208311"


def test_declarations_are_read_without_importing_the_features():
    code = ("import sys\nfrom video_enhance_kit.nodes import _registry\n"
            "d = _registry.tiny_declarations()\n"
            "print(sorted(d), sorted(m for m in sys.modules if m.startswith('video_enhance_kit.nodes.') and not m.endswith('_registry')),"
            " sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['venhancer']", "[]", "[]"]


def test_declaration_format():
    declared = _registry.tiny_declarations()["venhancer"]
    (model,) = declared["models"]
    assert model == {"folder": "venhancer", "filename": "vek-tiny-venhancer.safetensors",
                     "network": "models.venhancer:tiny_venhancer", "seed": 7007, "dtype": "float32"}
    assert declared["inputs"]["VEK_VEnhancerUpscale"] == {"resolution_rule": "exact", "up_scale": 1.0, "padding": "minimal"}


def test_read_tiny_refuses_code(tmp_path):
    good, bad, none = tmp_path / "good.py", tmp_path / "bad.py", tmp_path / "none.py"
    good.write_text("import x\nNODES = []\nTINY = {'inputs': {'VEK_A': {'n': 1}}}\n")
    bad.write_text("TINY = {'inputs': make()}\n")
    none.write_text("NODES = []\n")
    assert _registry.read_tiny(good) == {"inputs": {"VEK_A": {"n": 1}}}
    assert _registry.read_tiny(none) is None
    with pytest.raises(ValueError, match="plain data"):
        _registry.read_tiny(bad)


def test_substitution_of_loaders_and_declared_inputs():
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "VEK_VEnhancerUpscale", "inputs": {"up_scale": 4.0, "padding": ["9", 0], "seed": 3}},
        "3": {"class_type": "VEK_VEnhancerModelLoader", "inputs": {"ckpt_name": "venhancer_v2.pt"}},
        "4": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
        "5": {"class_type": "LoadVideo", "inputs": {"file": "mine.mp4"}},
    }
    out, changes = tiny.substitute_tiny_models(prompt)
    assert prompt["2"]["inputs"]["up_scale"] == 4.0  # the input prompt is not mutated
    assert out["1"]["inputs"]["ckpt_name"] == "vek-tiny-sd15.safetensors"
    assert out["2"]["inputs"] == {"up_scale": 1.0, "padding": ["9", 0], "seed": 3, "resolution_rule": "exact"}
    assert out["3"]["inputs"]["ckpt_name"] == "vek-tiny-venhancer.safetensors"
    assert out["4"]["inputs"]["file"] == "vek_sample_tiny.mp4" and out["5"]["inputs"]["file"] == "mine.mp4"
    assert changes == [
        "1 CheckpointLoaderSimple.ckpt_name: 'sd15.safetensors' -> 'vek-tiny-sd15.safetensors'",
        "2 VEK_VEnhancerUpscale.up_scale: 4.0 -> 1.0",
        "2 VEK_VEnhancerUpscale.resolution_rule: None -> 'exact'",
        "3 VEK_VEnhancerModelLoader.ckpt_name: 'venhancer_v2.pt' -> 'vek-tiny-venhancer.safetensors'",
        "4 LoadVideo.file: 'vek_sample.mp4' -> 'vek_sample_tiny.mp4'",
    ]
    own, _ = tiny.substitute_tiny_models({"1": {"class_type": "VEK_Test", "inputs": {"n": 8}}}, {"VEK_Test": {"n": 2}})
    assert own["1"]["inputs"]["n"] == 2


def test_loader_rules_follow_the_family():
    prompt = {
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5.safetensors", "type": "wan"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": "vae-ft-mse.safetensors"}},
        "5": {"class_type": "UNETLoader", "inputs": {"unet_name": ["9", 0], "weight_dtype": "fp8_e4m3fn"}},
        "6": {"class_type": "CLIPLoader", "inputs": {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}},
    }
    out, changes = tiny.substitute_tiny_models(prompt)
    assert out["2"]["inputs"] == {"clip_name": "vek-tiny-clip-l.safetensors", "type": "sd3"}
    assert out["3"]["inputs"]["vae_name"] == "vek-tiny-wan21-vae.safetensors"
    assert out["4"]["inputs"]["vae_name"] == "vek-tiny-taesd.safetensors"
    assert out["5"]["inputs"] == {"unet_name": ["9", 0], "weight_dtype": "default"}
    assert out["6"]["inputs"]["type"] == "stable_diffusion" and len(changes) == 6


def test_tiny_models_list_the_host_families_and_the_declared_ones():
    models = tiny_models.tiny_models()
    assert list(models) == ["vek-tiny-sd15.safetensors", "vek-tiny-clip-l.safetensors", "vek-tiny-wan21.safetensors",
                            "vek-tiny-wan21-vae.safetensors", "vek-tiny-taesd.safetensors", "vek-tiny-venhancer.safetensors"]
    assert models["vek-tiny-venhancer.safetensors"].folder == "venhancer"
    assert models["vek-tiny-venhancer.safetensors"].dtype == torch.float32
    assert models["vek-tiny-wan21.safetensors"].dtype == torch.float32 and models["vek-tiny-taesd.safetensors"].dtype == torch.float16


def test_declared_tiny_venhancer_is_byte_identical_and_cached(tmp_path):
    model = tiny_models.tiny_models()["vek-tiny-venhancer.safetensors"]
    path = tiny_models.ensure_tiny_model(model, root=tmp_path)
    assert path == tmp_path / "venhancer" / "vek-tiny-venhancer.safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TINY_VENHANCER_SHA256
    mtime = path.stat().st_mtime_ns
    assert tiny_models.ensure_tiny_models({model.filename: model}, root=tmp_path) == {model.filename: path}
    assert path.stat().st_mtime_ns == mtime  # cached: not rebuilt


def test_fill_is_seeded_and_follows_the_key_rules():
    state = {"b.bias": torch.empty(3), "a.weight": torch.empty(4, 2), "n.norm.weight": torch.empty(3), "z.weight": torch.empty(2, 2)}
    a, b = tiny_models.fill(state, seed=1), tiny_models.fill(state, seed=1)
    assert list(a) == ["a.weight", "b.bias", "n.norm.weight", "z.weight"]
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["a.weight"], tiny_models.fill(state, 2)["a.weight"])
    assert torch.equal(a["b.bias"], torch.zeros(3)) and torch.equal(a["n.norm.weight"], torch.ones(3))
    assert torch.equal(tiny_models.fill(state, 1, identity=lambda k: k == "z.weight")["z.weight"], torch.zeros(2, 2))
