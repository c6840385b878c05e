"""Every example workflow converts (comfy-cli), validates and executes in real ComfyUI with tiny models.

Tiny runs swap the model files for the tiny models, the sample clip for its 64 px / 9-frame variant,
and cap every ``steps`` / ``*_steps`` input at MAX_STEPS (start/end steps scale with it), so each
workflow runs in seconds on a free CPU core while every node of it executes for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comfy_cli.workflow_to_api import convert_ui_to_api
from video_enhance_kit.assets.workflow_ui import api_to_ui, default_of, widget_count
from video_enhance_kit.host import substitute_tiny_models

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
MAX_STEPS = 3


def _ids(paths):
    return [p.stem for p in paths]


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_example_workflow_runs_with_tiny_models(path, comfy_host, object_info):
    workflow = json.loads(path.read_text())
    assert isinstance(workflow.get("nodes"), list) and isinstance(workflow.get("links"), list), \
        f"{path.name} must be in the UI (frontend) format: write assets/workflow_sources/{path.stem}.py and run assets/make_workflows.py"
    prompt = comfy_host.to_api(workflow)
    assert prompt, f"{path.name}: the converter produced an empty prompt"
    tiny, _ = substitute_tiny_models(prompt)  # the real model files are not here: validate what will run
    ok, error, outputs, _ = comfy_host.validate(tiny)
    assert ok, f"{path.name} does not validate (with tiny models): {error}"
    result = comfy_host.run_prompt(prompt, tiny=True, max_steps=MAX_STEPS)
    result.raise_for_error()
    executed = set(result.timings)
    assert set(outputs) <= executed | set(result.outputs), f"output nodes that did not run: {set(outputs) - executed}"
    assert result.outputs or result.files, f"{path.name} produced nothing"


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_example_workflow_has_a_small_thumbnail(path):
    from PIL import Image

    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing: run python assets/make_workflows.py {path.stem}"
    assert thumb.stat().st_size < 1_000_000
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and min(im.size) >= 64


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_example_workflow_names_real_model_files_and_the_sample_clip(path, comfy_host):
    prompt = comfy_host.to_api(json.loads(path.read_text()))
    for node_id, node in prompt.items():
        for value in node["inputs"].values():
            assert not (isinstance(value, str) and value.startswith("vek-tiny-")), \
                f"{path.name} node {node_id} names a tiny test model ({value}); name the real file users download"
        if node["class_type"] == "LoadVideo":
            assert node["inputs"]["file"] == "vek_sample.mp4", f"{path.name}: load the bundled vek_sample.mp4"


def test_api_to_ui_round_trips_real_prompts(object_info, sd15_prompt, wan_prompt):
    video = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": ["2", 2]}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "video/vek", "format": "auto",
                                                   "codec": "auto"}},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "6": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    }
    for prompt in (sd15_prompt(), wan_prompt(), video):
        back = strip_meta(convert_ui_to_api(api_to_ui(prompt, object_info), object_info))
        assert set(back) == set(prompt)
        for node_id, node in prompt.items():
            got = back[node_id]["inputs"]
            assert {k: got[k] for k in node["inputs"]} == node["inputs"], node_id
            for extra in set(got) - set(node["inputs"]):  # inputs the prompt left out come back as defaults
                spec = object_info[node["class_type"]]["input"]["optional"][extra]
                assert got[extra] == default_of(spec), (node_id, extra)


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_every_node_has_the_widget_values_the_frontend_expects(path, object_info):
    """No widget-count mismatch in the frontend: upload widgets (LoadVideo ``[file, "image"]``) included."""
    for node in json.loads(path.read_text())["nodes"]:
        if node["type"] in ("MarkdownNote", "Note"):
            continue
        expected = widget_count(object_info[node["type"]])
        assert len(node["widgets_values"]) == expected, (path.name, node["id"], node["type"], node["widgets_values"])
