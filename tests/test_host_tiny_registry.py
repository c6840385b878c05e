"""Tiny-model registries are shared by every copy of the pack in a process (ComfyUI's copy and ours)."""

import importlib.util
import sys
import subprocess
from pathlib import Path

import torch

from video_enhance_kit.nodes import _host, _tiny_models

ROOT = Path(__file__).resolve().parents[1]


def load_copy(name: str):
    """Import nodes/_tiny_models.py a second time under another name, as ComfyUI does with the pack."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "nodes" / "_tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as ComfyUI's load_custom_node does
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def test_registries_are_shared_between_copies(tmp_path):
    other = load_copy("vek_other_copy_of_tiny_models")
    assert other is not _tiny_models
    assert other.TINY_MODELS is _tiny_models.TINY_MODELS
    model = other.TinyModel("vek_test_folder", "vek-tiny-test.safetensors", lambda: {"w": torch.ones(2, 3)}, torch.float32)
    try:
        other.register_tiny_model(model)
        assert _tiny_models.TINY_MODELS["vek-tiny-test.safetensors"] is model
        path = _tiny_models.ensure_tiny_model("vek-tiny-test.safetensors", root=tmp_path)
        assert path == tmp_path / "vek_test_folder" / "vek-tiny-test.safetensors"
        from safetensors.torch import load_file

        assert torch.equal(load_file(str(path))["w"], torch.ones(2, 3))
        mtime = path.stat().st_mtime_ns
        assert _tiny_models.ensure_tiny_model("vek-tiny-test.safetensors", root=tmp_path) == path
        assert path.stat().st_mtime_ns == mtime  # cached: not rebuilt
    finally:
        _tiny_models.TINY_MODELS.pop("vek-tiny-test.safetensors", None)


def test_substitutions_registered_anywhere_apply():
    try:
        _host.register_tiny_substitution("VEK_TestLoader", lambda i: {**i, "name": "vek-tiny-test.safetensors"})
        out, changes = _host.substitute_tiny_models({"1": {"class_type": "VEK_TestLoader", "inputs": {"name": "real.pt"}}})
        assert out["1"]["inputs"]["name"] == "vek-tiny-test.safetensors" and len(changes) == 1
    finally:
        _host.TINY_SUBSTITUTIONS.pop("VEK_TestLoader", None)


def test_cap_steps_scales_start_and_end():
    prompt = {"1": {"class_type": "KSamplerAdvanced", "inputs": {"steps": 20, "start_at_step": 10, "end_at_step": 10000}},
              "2": {"class_type": "KSampler", "inputs": {"steps": 2}},
              "3": {"class_type": "BasicScheduler", "inputs": {"steps": ["9", 0]}}}
    prompt["4"] = {"class_type": "VEK_Two", "inputs": {"t2i_steps": 50, "t2v_block_steps": 0, "t2v_steps": 4,
                                                      "calibration_steps": True}}
    out, changes = _host.cap_steps(prompt, 4)
    assert out["1"]["inputs"] == {"steps": 4, "start_at_step": 2, "end_at_step": 10000}
    assert out["2"]["inputs"]["steps"] == 2 and out["3"]["inputs"]["steps"] == ["9", 0]
    assert out["4"]["inputs"] == {"t2i_steps": 4, "t2v_block_steps": 0, "t2v_steps": 4, "calibration_steps": True}
    assert prompt["1"]["inputs"]["steps"] == 20 and len(changes) == 3


def test_default_substitutions_do_not_replace_earlier_registrations():
    before = _host.TINY_SUBSTITUTIONS["CheckpointLoaderSimple"]
    _host._tiny_defaults()
    assert _host.TINY_SUBSTITUTIONS["CheckpointLoaderSimple"] is before


def test_venhancer_substitutions_apply_without_importing_the_node_file():
    # `run --server --tiny` never imports nodes/venhancer.py (it imports ComfyUI): the defaults must cover it.
    code = (
        "import sys\n"
        "from video_enhance_kit.nodes import _host\n"
        "p = {'1': {'class_type': 'VEK_VEnhancerUpscale', 'inputs': {'up_scale': 4.0}},\n"
        "     '2': {'class_type': 'VEK_VEnhancerModelLoader', 'inputs': {'ckpt_name': 'venhancer_v2.pt'}}}\n"
        "out, _ = _host.substitute_tiny_models(p)\n"
        "assert 'video_enhance_kit.nodes.venhancer' not in sys.modules\n"
        "print(out['1']['inputs']['up_scale'], out['1']['inputs']['padding'], out['2']['inputs']['ckpt_name'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1.0", "minimal", "vek-tiny-venhancer.safetensors"]
