"""assets/make_workflows.py without ComfyUI: source checks, UI workflow, deterministic small thumbnail."""

import importlib.util
import io
from pathlib import Path

import pytest
from comfy_cli.workflow_to_api import convert_ui_to_api

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("vek_make_workflows", ROOT / "assets" / "make_workflows.py")
mw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mw)


def info(inputs: dict, outputs: list, name: str) -> dict:
    return {"input": {"required": inputs}, "input_order": {"required": list(inputs)}, "output": outputs,
            "output_name": outputs, "name": name, "display_name": name.replace("_", " "), "category": "x",
            "output_node": not outputs, "description": ""}


OBJECT_INFO = {
    "Loader": info({"ckpt_name": [["m.safetensors"], {}]}, ["MODEL", "VAE"], "Loader"),
    "LoadVideo": info({"file": [["vek_sample.mp4"], {"video_upload": True}]}, ["VIDEO"], "LoadVideo"),
    "VEK_Enhance": info({"model": ["MODEL", {}], "video": ["VIDEO", {}], "seed": ["INT", {"default": 0}],
                         "strength": ["FLOAT", {"default": 0.5}]}, ["VIDEO"], "VEK_Enhance"),
    "Save": info({"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "x"}]}, [], "Save"),
}

SOURCE = {
    "TITLE": "Enhance a clip",
    "DESCRIPTION": "Download **m.safetensors** into models/checkpoints.",
    "PROMPT": {
        "1": {"class_type": "Loader", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
        "3": {"class_type": "VEK_Enhance", "inputs": {"model": ["1", 0], "video": ["2", 0], "seed": 3, "strength": 0.7}},
        "4": {"class_type": "Save", "inputs": {"video": ["3", 0], "filename_prefix": "video/vek"}},
    },
    "MODELS": {"1": [{"name": "m.safetensors", "directory": "checkpoints", "url": "https://example.org/m.safetensors"}]},
    "GROUPS": [{"title": "Inputs", "nodes": ["1", "2"]}],
    "NOTES": [{"text": "tip"}],
    "POSITIONS": None,
}


def test_build_workflow_round_trips_and_carries_notes_models_groups():
    ui = mw.build_workflow("enhance", SOURCE, OBJECT_INFO)
    back = convert_ui_to_api(ui, OBJECT_INFO)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in SOURCE["PROMPT"].items()}
    notes = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
    assert len(notes) == 2 and notes[0]["widgets_values"][0].startswith("# Enhance a clip")
    assert {n["id"] for n in ui["nodes"]} == {1, 2, 3, 4, 5, 6} and ui["last_node_id"] == 6
    loader = next(n for n in ui["nodes"] if n["id"] == 1)
    assert loader["properties"]["models"][0]["directory"] == "checkpoints"
    assert ui["groups"][0]["title"] == "Inputs"
    assert ui["extra"]["vek_source"] == "assets/workflow_sources/enhance.py"


def test_thumbnail_is_deterministic_small_jpeg():
    from PIL import Image

    ui = mw.build_workflow("enhance", SOURCE, OBJECT_INFO)
    a = mw.thumbnail_bytes(ui, "Enhance a clip", OBJECT_INFO)
    b = mw.thumbnail_bytes(mw.build_workflow("enhance", SOURCE, OBJECT_INFO), "Enhance a clip", OBJECT_INFO)
    assert a == b
    assert len(a) < 100_000
    im = Image.open(io.BytesIO(a))
    assert im.format == "JPEG" and im.size[0] == mw.THUMB_WIDTH and im.size[1] <= mw.THUMB_MAX_HEIGHT
    # the pack's node title bar is drawn in the pack colour somewhere in the picture
    rgb = im.convert("RGB")
    pixels = {rgb.getpixel((x, y)) for x in range(0, rgb.size[0], 2) for y in range(0, rgb.size[1], 2)}
    assert any(sum(abs(p - q) for p, q in zip(px, mw.PACK_TITLE)) < 24 for px in pixels)


def test_check_source_names_problems():
    bad = {"1": {"class_type": "Nope", "inputs": {}},
           "2": {"class_type": "Save", "inputs": {"video": ["9", 0], "prefix": "x"}}}
    problems = mw.check_source("bad", bad, OBJECT_INFO)
    assert any("no node 'Nope'" in p for p in problems)
    assert any("no input 'prefix'" in p for p in problems)
    assert any("missing node '9'" in p for p in problems)
    assert mw.check_source("good", SOURCE["PROMPT"], OBJECT_INFO) == []


def test_make_writes_and_check_detects_drift(tmp_path, monkeypatch):
    sources, out = tmp_path / "sources", tmp_path / "out"
    sources.mkdir()
    (sources / "enhance.py").write_text("\n".join(f"{k} = {v!r}" for k, v in SOURCE.items()) + "\n")
    monkeypatch.setattr(mw, "SOURCES", sources)
    monkeypatch.setattr(mw, "OUT", out)
    monkeypatch.setattr(mw, "ROOT", tmp_path)
    assert mw.make("enhance", OBJECT_INFO) == []
    assert (out / "enhance.json").is_file() and (out / "enhance.jpg").is_file()
    assert mw.make("enhance", OBJECT_INFO, check=True) == []
    (out / "enhance.json").write_text("{}")
    assert "out of date" in mw.make("enhance", OBJECT_INFO, check=True)[0]


def test_source_without_prompt_is_refused(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("TITLE = 'no prompt'\n")
    with pytest.raises(SystemExit, match="define PROMPT"):
        mw.load_source(src)
