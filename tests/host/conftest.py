"""Real-ComfyUI test harness: ComfyUI runs in this pytest process with the pack loaded.

Where ComfyUI comes from: ``$COMFYUI_PATH`` (e.g. ``COMFYUI_PATH=/work/comfyui``), or the ComfyUI whose
``custom_nodes`` folder holds this pack. If neither is found, every test under tests/host/ is skipped
with one reason ("host tests SKIPPED: ComfyUI not found; set COMFYUI_PATH=/path/to/ComfyUI").

ComfyUI starts once per pytest session (about 5-15 s; the tiny models are built on first use and
cached in ``~/.cache/video_enhance_kit/tiny-models-v1``, override with ``$VEK_TINY_MODELS_DIR``).
Every host test of every feature shares it: keep inputs tiny (e.g. 4-9 frames of 32-64 px, 2-3 steps).

Session fixtures (all take no arguments; use them as test parameters):

``comfy_host``    the started :class:`video_enhance_kit.host.ComfyHost`
                  (``input_dir``, ``output_dir``, ``object_info()``, ``node_class(id)``, ``pack_module(sub)``,
                  ``pack_node_ids()``, ``pack_errors``, ``tiny_models``).
``object_info``   dict: what GET /object_info returns (every node, the pack's included).
``run_prompt``    ``run_prompt(prompt, tiny=True, check=True, **kw) -> RunResult``: validate and execute an
                  API-format prompt (``{"1": {"class_type": ..., "inputs": {...}}}``). ``tiny=True`` makes the
                  loaders load the tiny models whatever file names the prompt gives. ``check=True`` raises
                  HostRunError (node id, type, message, traceback) on failure; with ``check=False`` inspect
                  ``result.success``, ``result.error`` (``node_id``, ``node_type``, ``message``,
                  ``exception_type``), ``result.node_errors`` (validation). ``result.outputs[node_id]`` is the
                  node's UI output (e.g. ``{"images": [{"filename", "subfolder", "type"}]}``),
                  ``result.files`` the files written (output and temp folders), ``result.timings`` seconds
                  per node, ``result.substitutions`` what the tiny run changed. Other keywords:
                  ``on_progress(node_id, value, max)``, ``fresh=True`` (drop ComfyUI's output cache, which
                  otherwise reuses unchanged nodes such as loaders across runs), ``max_steps=N`` (cap every
                  ``steps`` / ``*_steps`` input). Tiny runs also load ``vek_sample_tiny.mp4`` (64 px,
                  9 frames) where the prompt names ``vek_sample.mp4``.
``run_node``      ``run_node(class_type, **inputs) -> tuple``: execute ONE node class with Python values
                  exactly as ComfyUI calls it (V3 class clone, inference mode); returns one value per output
                  (``.ui`` holds the UI dict). Exceptions (e.g. the pack's InputError) propagate. Progress:
                  set ``comfy_host.node_progress = fn(node_id, value, max)`` (node_id is "run_node").
                  Model files: name the tiny ones (``vek-tiny-sd15.safetensors`` ...): no substitution here.
``run_workflow``  ``run_workflow(path_or_dict, tiny=True, check=True, overrides=None, **kw) -> RunResult``:
                  a UI- or API-format workflow; ``overrides={"NODE_ID.input": value}``.
``pack``          ``pack("utils.flow")``: the pack's module as ComfyUI imported it (build inputs whose
                  class a node checks with isinstance from here, not from ``video_enhance_kit.*``).
``tiny_models``   ``{filename: Path}`` of the tiny models (names in ``video_enhance_kit.host.tiny``:
                  SD15_CHECKPOINT, CLIP_L, WAN21_MODEL, WAN21_VAE, TAESD_VAE).

Prompt builders: the fixtures ``sd15_prompt`` and ``wan_prompt`` return functions that build a small
txt2img (frames as batch) / txt2video API prompt on the tiny models, to extend with your nodes::

    def test_my_node(run_prompt, sd15_prompt):
        p = sd15_prompt(frames=4, size=32, steps=2)      # ids: 1 ckpt, 2 pos, 3 neg, 4 latent, 5 KSampler,
        p["10"] = {"class_type": "VEK_MyPatch", "inputs": {"model": ["1", 0], "strength": 0.5}}
        p["5"]["inputs"]["model"] = ["10", 0]            #      6 VAEDecode, 7 PreviewImage
        result = run_prompt(p)
        assert result.timings["10"] >= 0

Tiny model ids of the Wan prompt: 1 UNETLoader, 2 CLIPLoader, 3 VAELoader, 4/5 text, 6 latent
(EmptyHunyuanLatentVideo, 16 channels, [1, 16, (frames-1)//4+1, size/8, size/8]), 7 KSampler,
8 VAEDecode, 9 PreviewImage. The Wan VAE is ComfyUI's fixed 127 M-param design: decoding 9 frames
at 64 px takes ~10 s on one CPU core, so prefer latents-only tests where you can.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from video_enhance_kit.host import (
    ComfyHost,
    HostError,
    describe_missing_comfyui,
    find_comfyui,
)

HOST_DIR = Path(__file__).parent
COMFYUI = find_comfyui()
SKIP_REASON = None if COMFYUI else f"host tests SKIPPED: {describe_missing_comfyui()}"


if not COMFYUI:
    # One skip line, not one per file: only test_pack.py is collected (its tests skip with SKIP_REASON).
    collect_ignore_glob = [p.name for p in HOST_DIR.glob("test_*.py") if p.name != "test_pack.py"]


def pytest_report_header(config):
    return f"host tests: ComfyUI at {COMFYUI}" if COMFYUI else SKIP_REASON


def pytest_collection_modifyitems(config, items):
    if COMFYUI:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HOST_DIR in Path(str(item.fspath)).parents:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COMFYUI:
        terminalreporter.write_line(SKIP_REASON, yellow=True, bold=True)


@pytest.fixture(scope="session")
def comfy_host() -> ComfyHost:
    if not COMFYUI:
        pytest.skip(SKIP_REASON)
    try:
        return ComfyHost.start(COMFYUI, tiny_models=True)
    except HostError as exc:  # the pack failed to import: every host test fails with the reason
        pytest.fail(f"ComfyUI could not start with the pack: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def object_info(comfy_host) -> dict:
    return comfy_host.object_info()


@pytest.fixture(scope="session")
def tiny_models(comfy_host) -> dict:
    return dict(comfy_host.tiny_models)


@pytest.fixture(scope="session")
def pack(comfy_host):
    return comfy_host.pack_module


@pytest.fixture(scope="session")
def run_prompt(comfy_host):
    def run(prompt: dict, *, tiny: bool = True, check: bool = True, **kwargs):
        result = comfy_host.run_prompt(prompt, tiny=tiny, **kwargs)
        return result.raise_for_error() if check else result

    return run


@pytest.fixture(scope="session")
def run_workflow(comfy_host):
    def run(workflow, *, tiny: bool = True, check: bool = True, overrides: dict | None = None, **kwargs):
        result = comfy_host.run_workflow(workflow, tiny=tiny, overrides=overrides, **kwargs)
        return result.raise_for_error() if check else result

    return run


@pytest.fixture(scope="session")
def run_node(comfy_host):
    return comfy_host.run_node


@pytest.fixture(scope="session")
def sd15_prompt():
    def build(frames: int = 4, size: int = 32, steps: int = 2, cfg: float = 4.0, seed: int = 0,
              text: str = "a red ball rolling on grass") -> dict:
        return {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
            "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}},
            "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                       "latent_image": ["4", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                       "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
            "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
            "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
        }

    return build


@pytest.fixture(scope="session")
def wan_prompt():
    def build(frames: int = 5, size: int = 32, steps: int = 2, cfg: float = 4.0, seed: int = 0,
              text: str = "a red ball rolling on grass") -> dict:
        return {
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors", "weight_dtype": "default"}},
            "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}},
            "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
            "4": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["2", 0]}},
            "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
            "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
            "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0],
                                                       "latent_image": ["6", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                       "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        }

    return build
