"""Make the example workflows: ``example_workflows/<name>.json`` (UI format) and ``<name>.jpg`` thumbnails.

Authors write a workflow in the API format, in ``assets/workflow_sources/<name>.py``; this script
starts ComfyUI in-process with the pack (for /object_info: widget order, defaults, socket types),
turns the source into the frontend's UI format with ``assets/workflow_ui.py`` (``api_to_ui``) and draws a
thumbnail of the graph with Pillow (``assets/workflow_thumbnail.py``).

Usage::

    python assets/make_workflows.py                   # every assets/workflow_sources/*.py
    python assets/make_workflows.py nc_sdedit evs_t2i_t2v      # just these
    python assets/make_workflows.py --check           # exit 1 if a committed file differs from its source
    python assets/make_workflows.py --comfyui /path/to/ComfyUI   # default: $COMFYUI_PATH or custom_nodes

A source file defines (only PROMPT is required)::

    TITLE = "Noise Calibration: SDEdit that keeps the input's colours"   # thumbnail banner, workflow extra
    DESCRIPTION = "What it does, which models to download, what to tweak (Markdown)."  # a note in the graph
    PROMPT = {                                   # API format, node ids "1", "2", ... (kept in the UI file)
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
        "3": {"class_type": "VEK_Something", "inputs": {"model": ["1", 0], "strength": 0.5},
              "_meta": {"title": "optional node title"}},
        ...
    }
    MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                     "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}
                                                 # per loader node: the frontend offers these downloads
    GROUPS = [{"title": "Load", "nodes": ["1", "2"], "color": "#3f789e"}]   # boxes around nodes
    NOTES = [{"text": "**Tip** ...", "pos": (50, 600), "size": (400, 160)}]  # extra Markdown notes
    POSITIONS = {"3": (800, 80)}                 # override the automatic left-to-right layout

Rules the tests check (tests/host/test_workflows.py): the workflow loads ``vek_sample.mp4`` with
LoadVideo, names the real model files users download (the harness swaps in tiny models), validates
and executes; the thumbnail is a JPEG under 1 MB (these come out at 20-60 KB). Output is deterministic:
re-running the script on an unchanged source rewrites identical files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from video_enhance_kit.assets.workflow_thumbnail import (
    PACK_TITLE,
    THUMB_MAX_HEIGHT,
    THUMB_WIDTH,
    thumbnail_bytes,
)
from video_enhance_kit.assets.workflow_ui import api_to_ui

__all__ = ["PACK_TITLE", "THUMB_MAX_HEIGHT", "THUMB_WIDTH", "api_to_ui", "build_workflow", "check_source", "make",
           "thumbnail_bytes"]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "assets" / "workflow_sources"
OUT = ROOT / "example_workflows"

def load_source(path: Path) -> dict:
    """The variables of one source file (PROMPT, TITLE, DESCRIPTION, MODELS, GROUPS, NOTES, POSITIONS)."""
    spec = importlib.util.spec_from_file_location(f"vek_workflow_source_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "PROMPT", None), dict):
        raise SystemExit(f"{path}: define PROMPT = {{...}} (an API-format prompt)")
    return {key: getattr(module, key, None) for key in
            ("PROMPT", "TITLE", "DESCRIPTION", "MODELS", "GROUPS", "NOTES", "POSITIONS")}


def check_source(name: str, prompt: dict, object_info: dict) -> list[str]:
    """Problems a converter would hide: unknown nodes, unknown input names, links to missing nodes."""
    problems = []
    for node_id, node in prompt.items():
        info = object_info.get(node.get("class_type"))
        if info is None:
            problems.append(f"{name}: node {node_id}: ComfyUI has no node {node.get('class_type')!r}")
            continue
        known = {n for sec in ("required", "optional") for n in (info["input"].get(sec) or {})}
        for key, value in node.get("inputs", {}).items():
            if key not in known:
                problems.append(f"{name}: node {node_id} ({node['class_type']}) has no input {key!r}; inputs: {sorted(known)}")
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in prompt:
                problems.append(f"{name}: node {node_id}.{key} links to missing node {value[0]!r}")
    return problems


def build_workflow(name: str, source: dict, object_info: dict) -> dict:
    """The UI-format workflow of one source."""
    title = source.get("TITLE") or name
    notes = list(source.get("NOTES") or [])
    description = source.get("DESCRIPTION")
    prompt = source["PROMPT"]
    ui = api_to_ui(prompt, object_info, title=title, positions=source.get("POSITIONS"),
                   groups=source.get("GROUPS"), notes=None)
    if description:
        right = max(n["pos"][0] + n["size"][0] for n in ui["nodes"])
        notes.insert(0, {"text": f"# {title}\n\n{description.strip()}", "pos": (right + 60, 80), "size": (420, 360),
                         "title": "About this workflow"})
    if notes:
        ui_notes = api_to_ui({}, object_info, notes=notes)["nodes"]
        next_id = ui["last_node_id"] + 1
        for i, note in enumerate(ui_notes):
            note["id"] = next_id + i
            note["order"] = len(ui["nodes"])
            if "pos" not in notes[i]:  # below the graph
                note["pos"] = [50, max(n["pos"][1] + n["size"][1] for n in ui["nodes"]) + 60]
            ui["nodes"].append(note)
        ui["last_node_id"] = next_id + len(ui_notes) - 1
    for node_id, models in (source.get("MODELS") or {}).items():
        node = next(n for n in ui["nodes"] if n["id"] == int(node_id))
        node["properties"]["models"] = models
    ui["extra"]["vek_source"] = f"assets/workflow_sources/{name}.py"
    if description:
        ui["extra"]["vek_description"] = description.strip()
    return ui


def workflow_text(ui: dict) -> str:
    return json.dumps(ui, indent=2, ensure_ascii=False) + "\n"


def make(name: str, object_info: dict, check: bool = False) -> list[str]:
    """Write (or with ``check`` compare) ``example_workflows/<name>.json`` and ``.jpg``; return problems."""
    source = load_source(SOURCES / f"{name}.py")
    problems = check_source(name, source["PROMPT"], object_info)
    if problems:
        return problems
    ui = build_workflow(name, source, object_info)
    text = workflow_text(ui)
    jpg = thumbnail_bytes(ui, source.get("TITLE") or name, object_info)
    json_path, jpg_path = OUT / f"{name}.json", OUT / f"{name}.jpg"
    if check:
        if not json_path.is_file() or json_path.read_text() != text:
            problems.append(f"{json_path.relative_to(ROOT)} is out of date: run python assets/make_workflows.py {name}")
        if not jpg_path.is_file():
            problems.append(f"{jpg_path.relative_to(ROOT)} missing: run python assets/make_workflows.py {name}")
        return problems
    OUT.mkdir(exist_ok=True)
    json_path.write_text(text)
    jpg_path.write_bytes(jpg)
    print(f"wrote {json_path.relative_to(ROOT)} ({len(ui['nodes'])} nodes) and {jpg_path.name} ({len(jpg) // 1024} KB)")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="source names (assets/workflow_sources/<name>.py); default: all")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--comfyui", help="ComfyUI root (default: $COMFYUI_PATH or the ComfyUI holding the pack)")
    args = parser.parse_args(argv)

    names = args.names or sorted(p.stem for p in SOURCES.glob("*.py") if not p.name.startswith("_"))
    missing = [n for n in names if not (SOURCES / f"{n}.py").is_file()]
    if missing:
        print(f"no source for {', '.join(missing)} in {SOURCES.relative_to(ROOT)}", file=sys.stderr)
        return 2
    if not names:
        print(f"no sources in {SOURCES.relative_to(ROOT)}", file=sys.stderr)
        return 0

    from video_enhance_kit.host import ComfyHost, HostError

    try:
        host = ComfyHost.start(args.comfyui)
    except HostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    object_info = host.object_info()
    problems = []
    for name in names:
        problems += make(name, object_info, check=args.check)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
