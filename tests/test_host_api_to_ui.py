"""api_to_ui: API prompt -> UI workflow that comfy-cli's converter turns back into the same prompt."""

import copy
import json
from pathlib import Path

import pytest
from comfy_cli.workflow_to_api import convert_ui_to_api
from video_enhance_kit.assets import workflow_ui
from video_enhance_kit.assets.workflow_ui import api_to_ui

ROOT = Path(__file__).resolve().parents[1]

OBJECT_INFO = {
    "Loader": {
        "input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {"tooltip": "t"}]}},
        "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"], "output_name": ["MODEL", "CLIP", "VAE"],
        "name": "Loader", "display_name": "Load", "category": "x", "output_node": False, "description": "",
    },
    "Sampler": {
        "input": {
            "required": {
                "model": ["MODEL", {}],
                "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}],
                "steps": ["INT", {"default": 20, "min": 1}],
                "cfg": ["FLOAT", {"default": 8.0}],
                "sampler_name": [["euler", "ddim", "randomize"], {}],
                "latent": ["LATENT", {}],
            },
            "optional": {
                "denoise": ["FLOAT", {"default": 1.0}],
                "extra": ["STRING", {"forceInput": True}],
                "note": ["STRING", {"default": "hi", "multiline": True}],
            },
        },
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "latent"],
                        "optional": ["denoise", "extra", "note"]},
        "output": ["LATENT"], "output_name": ["LATENT"], "name": "Sampler", "display_name": "Sample",
        "category": "x", "output_node": False, "description": "",
    },
    "Noise": {
        "input": {"required": {"noise_seed": ["INT", {"default": 0}], "mode": ["COMBO", {"options": ["fixed", "b"]}]}},
        "input_order": {"required": ["noise_seed", "mode"]},
        "output": ["LATENT"], "output_name": ["LATENT"], "name": "Noise", "display_name": "Noise",
        "category": "x", "output_node": False, "description": "",
    },
    "Text": {
        "input": {"required": {"text": ["STRING", {"default": ""}]}},
        "input_order": {"required": ["text"]},
        "output": ["STRING"], "output_name": ["STRING"], "name": "Text", "display_name": "Text",
        "category": "x", "output_node": False, "description": "",
    },
    "Save": {
        "input": {"required": {"samples": ["LATENT", {}], "prefix": ["STRING", {"default": "out"}],
                               "sizes": ["INT", {"default": 1}]}},
        "input_order": {"required": ["samples", "prefix", "sizes"]},
        "output": [], "output_name": [], "name": "Save", "display_name": "Save", "category": "x",
        "output_node": True, "description": "",
    },
}

PROMPT = {
    "1": {"class_type": "Loader", "inputs": {"ckpt_name": "b.safetensors"}},
    "2": {"class_type": "Noise", "inputs": {"noise_seed": 7, "mode": "fixed"}},
    "3": {"class_type": "Sampler", "inputs": {"seed": 123, "steps": 3, "cfg": 2.5, "sampler_name": "randomize",
                                              "denoise": 0.4, "note": "x", "model": ["1", 0], "latent": ["2", 0],
                                              "extra": ["5", 0]}},
    "4": {"class_type": "Save", "inputs": {"prefix": "vek", "sizes": ["6", 0], "samples": ["3", 0]}},
    "5": {"class_type": "Text", "inputs": {"text": "hello"}},
    "6": {"class_type": "Noise", "inputs": {"noise_seed": 1, "mode": "b"}},
}


def strip_meta(prompt):
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def test_round_trip_through_comfy_cli_converter():
    ui = api_to_ui(PROMPT, OBJECT_INFO)
    back = strip_meta(convert_ui_to_api(ui, OBJECT_INFO))
    assert back == strip_meta(PROMPT)


def test_widget_values_follow_frontend_order_with_control_after_generate():
    ui = api_to_ui(PROMPT, OBJECT_INFO, control_after_generate="fixed")
    sampler = next(n for n in ui["nodes"] if n["id"] == 3)
    assert sampler["widgets_values"] == [123, "fixed", 3, 2.5, "randomize", 0.4, "x"]
    noise = next(n for n in ui["nodes"] if n["id"] == 2)
    assert noise["widgets_values"] == [7, "fixed", "fixed"]  # noise_seed gets a companion even unflagged
    save = next(n for n in ui["nodes"] if n["id"] == 4)
    assert save["widgets_values"] == ["vek", 1]  # a linked widget keeps its slot (default value)


def test_links_are_consistent():
    ui = api_to_ui(PROMPT, OBJECT_INFO)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_link_id"] == len(ui["links"]) == 5
    for link_id, src, src_slot, dst, dst_slot, ltype in ui["links"]:
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[src]["outputs"][src_slot]["type"] == ltype
    # links of a linked widget input carry the widget marker, so the frontend shows a socket
    sizes = next(i for i in nodes[4]["inputs"] if i["name"] == "sizes")
    assert sizes["widget"] == {"name": "sizes"} and sizes["link"] is not None


def test_layout_left_to_right_by_depth_and_deterministic():
    ui = api_to_ui(PROMPT, OBJECT_INFO)
    x = {n["id"]: n["pos"][0] for n in ui["nodes"]}
    assert x[1] < x[3] < x[4] and x[5] < x[3]
    assert api_to_ui(PROMPT, OBJECT_INFO) == ui
    moved = api_to_ui(PROMPT, OBJECT_INFO, positions={"1": (5, 6)})
    assert next(n for n in moved["nodes"] if n["id"] == 1)["pos"] == [5, 6]


def test_defaults_fill_missing_widgets_and_converter_agrees():
    prompt = {"1": {"class_type": "Loader", "inputs": {}},
              "2": {"class_type": "Noise", "inputs": {}},
              "3": {"class_type": "Sampler", "inputs": {"model": ["1", 0], "latent": ["2", 0]}}}
    back = convert_ui_to_api(api_to_ui(prompt, OBJECT_INFO), OBJECT_INFO)
    assert back["3"]["inputs"]["steps"] == 20 and back["3"]["inputs"]["sampler_name"] == "euler"
    assert back["1"]["inputs"]["ckpt_name"] == "a.safetensors"


def test_titles_notes_and_groups():
    prompt = copy.deepcopy(PROMPT)
    prompt["3"]["_meta"] = {"title": "My sampler"}
    ui = api_to_ui(prompt, OBJECT_INFO, notes=[{"text": "# read me"}], groups=[{"title": "Load", "nodes": ["1", "2"]}])
    assert next(n for n in ui["nodes"] if n["id"] == 3)["title"] == "My sampler"
    note = next(n for n in ui["nodes"] if n["type"] == "MarkdownNote")
    assert note["widgets_values"] == ["# read me"] and note["id"] == 7
    (group,) = ui["groups"]
    x, _y, w, _h = group["bounding"]
    for n in ui["nodes"]:
        if n["id"] in (1, 2):
            assert x <= n["pos"][0] and n["pos"][0] + n["size"][0] <= x + w
    back = convert_ui_to_api(ui, OBJECT_INFO)
    assert set(back) == set(PROMPT) and back["3"]["_meta"]["title"] == "My sampler"


def test_list_values_round_trip_wrapped():
    prompt = {"1": {"class_type": "Text", "inputs": {"text": {"__value__": [1, 2]}}},
              "2": {"class_type": "Save", "inputs": {"samples": ["1", 0]}}}
    back = convert_ui_to_api(api_to_ui(prompt, OBJECT_INFO), OBJECT_INFO)
    assert back["1"]["inputs"]["text"] == {"__value__": [1, 2]}


def test_non_integer_ids_rejected():
    with pytest.raises(ValueError, match="integer node ids"):
        api_to_ui({"a": {"class_type": "Text", "inputs": {}}}, OBJECT_INFO)


def test_unknown_node_named():
    with pytest.raises(KeyError, match="NoSuchNode"):
        api_to_ui({"1": {"class_type": "NoSuchNode", "inputs": {}}}, OBJECT_INFO)


def test_group_boxes_never_overlap():
    groups = [{"title": "A", "nodes": ["1", "5"]}, {"title": "B", "nodes": ["2", "6"]}]
    ui = api_to_ui(PROMPT, OBJECT_INFO, groups=groups)
    (a, b) = [g["bounding"] for g in ui["groups"]]
    assert a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]  # one band above the other
    nodes = {n["id"]: n for n in ui["nodes"]}
    for nid in (3, 4):  # ungrouped nodes lie outside both boxes
        x, y = nodes[nid]["pos"]
        for gx, gy, gw, gh in (a, b):
            assert not (gx <= x <= gx + gw and gy <= y <= gy + gh)


UPLOADS = {
    "LoadVideo": {"input": {"required": {"file": [["vek_sample.mp4", "b.mp4"], {"video_upload": True}]}},
                  "input_order": {"required": ["file"]}, "output": ["VIDEO"], "output_name": ["VIDEO"],
                  "name": "LoadVideo", "display_name": "Load Video", "category": "x", "output_node": False},
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]},
                            "optional": {"note": ["STRING", {"default": "n"}]}},
                  "input_order": {"required": ["image"], "optional": ["note"]}, "output": ["IMAGE", "MASK"],
                  "output_name": ["IMAGE", "MASK"], "name": "LoadImage", "display_name": "Load Image", "category": "x",
                  "output_node": False},
}


def test_upload_widgets_are_stored_as_comfyui_templates_store_them():
    prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": "b.mp4"}},
              "2": {"class_type": "LoadImage", "inputs": {"image": "a.png", "note": "x"}}}
    ui = api_to_ui(prompt, UPLOADS)
    video, image = ui["nodes"]
    assert video["widgets_values"] == ["b.mp4", "image"]
    assert image["widgets_values"] == ["a.png", "x", "image"]  # the upload widget's value comes last
    assert [workflow_ui.widget_count(UPLOADS[t]) for t in ("LoadVideo", "LoadImage")] == [2, 3]
    assert video["size"] == [workflow_ui.NODE_WIDTH, 30 + 22 + 24 + 10]  # the drawn height counts the file row only
    back = convert_ui_to_api(ui, UPLOADS)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in prompt.items()}


def test_widget_count_counts_seed_companions():
    assert workflow_ui.widget_count(OBJECT_INFO["Sampler"]) == 7  # seed + control, steps, cfg, sampler, denoise, note
    assert workflow_ui.widget_count(OBJECT_INFO["Loader"]) == 1


def test_example_workflows_store_upload_widgets_with_their_value():
    """Every LoadVideo / LoadImage of example_workflows holds [file, "image"], as the frontend saves it."""
    found = 0
    for path in sorted((ROOT / "example_workflows").glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] in ("LoadVideo", "LoadImage"):
                found += 1
                assert len(node["widgets_values"]) == 2 and node["widgets_values"][1] == "image", (path.name, node["id"])
    assert found >= 9
