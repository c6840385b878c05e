"""Make the example workflows: ``example_workflows/<name>.json`` (UI format) and ``<name>.jpg`` thumbnails.

Authors write a workflow in the API format, in ``assets/workflow_sources/<name>.py``; this script
starts ComfyUI in-process with the pack (for /object_info: widget order, defaults, socket types),
turns the source into the frontend's UI format with ``nodes/_host.api_to_ui`` and draws a thumbnail of
the graph with Pillow.

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
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "assets" / "workflow_sources"
OUT = ROOT / "example_workflows"

THUMB_WIDTH = 768
THUMB_MAX_HEIGHT = 512
BACKGROUND = (32, 32, 34)
NODE_BODY = (53, 53, 56)
NODE_TITLE = (70, 70, 74)
PACK_TITLE = (46, 104, 140)  # the pack's own nodes stand out
NOTE_BODY = (64, 60, 40)
TEXT = (230, 230, 230)
LINK_COLOURS = {  # ComfyUI's default link colours
    "MODEL": (179, 157, 219), "CLIP": (255, 213, 0), "VAE": (255, 110, 110), "LATENT": (255, 156, 249),
    "IMAGE": (100, 181, 246), "MASK": (129, 199, 132), "CONDITIONING": (255, 169, 49), "VIDEO": (120, 200, 200),
    "NOISE": (176, 176, 176), "GUIDER": (102, 204, 170), "SAMPLER": (236, 182, 99), "SIGMAS": (205, 255, 205),
    "INT": (41, 105, 157), "FLOAT": (170, 238, 136), "STRING": (119, 221, 119),
}


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
    from video_enhance_kit.nodes._host import api_to_ui

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


# ---------------------------------------------------------------------------------------------
# Thumbnail
# ---------------------------------------------------------------------------------------------


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: bundled scalable font, same everywhere
    except TypeError:
        return ImageFont.load_default()


def _socket_rows(node: dict) -> tuple[list[int | None], int]:
    """Visible input rows (link id or None for each socket drawn) and the number of outputs."""
    rows = [i.get("link") for i in node.get("inputs", []) if "widget" not in i or i.get("link") is not None]
    return rows, len(node.get("outputs", []))


def _bezier(p0, p3, steps: int = 24):
    (x0, y0), (x3, y3) = p0, p3
    dx = max(40.0, abs(x3 - x0) * 0.5)
    p1, p2 = (x0 + dx, y0), (x3 - dx, y3)
    pts = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        pts.append((a * x0 + b * p1[0] + c * p2[0] + d * x3, a * y0 + b * p1[1] + c * p2[1] + d * y3))
    return pts


def render_thumbnail(ui: dict, title: str, object_info: dict | None = None):
    """A Pillow image of the graph: node boxes at their UI positions with titles, coloured links, the title."""
    from PIL import Image, ImageDraw

    object_info = object_info or {}
    nodes = ui["nodes"]
    x0 = min(n["pos"][0] for n in nodes) - 40
    y0 = min(n["pos"][1] for n in nodes) - 60
    for g in ui.get("groups", []):
        x0, y0 = min(x0, g["bounding"][0] - 20), min(y0, g["bounding"][1] - 20)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes) + 40
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes) + 40
    banner = 56
    scale = min(THUMB_WIDTH / (x1 - x0), (THUMB_MAX_HEIGHT - banner) / (y1 - y0), 1.0)
    width = THUMB_WIDTH
    height = int(min(THUMB_MAX_HEIGHT, banner + (y1 - y0) * scale + 8))
    offset_x = (width - (x1 - x0) * scale) / 2

    def tx(x, y):
        return offset_x + (x - x0) * scale, banner + (y - y0) * scale

    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for g in ui.get("groups", []):
        gx, gy, gw, gh = g["bounding"]
        colour = tuple(int(g.get("color", "#3f789e")[i:i + 2], 16) for i in (1, 3, 5))
        fill = tuple(int(0.35 * c + 0.65 * b) for c, b in zip(colour, BACKGROUND))
        draw.rounded_rectangle([*tx(gx, gy), *tx(gx + gw, gy + gh)], radius=6, fill=fill, outline=colour)
        draw.text(tx(gx + 8, gy + 6), g["title"], fill=TEXT, font=_font(max(9, int(22 * scale))))

    by_id = {n["id"]: n for n in nodes}
    slot_gap = 22

    def out_pos(node, slot):
        return tx(node["pos"][0] + node["size"][0], node["pos"][1] + 30 + slot_gap * slot + 11)

    def in_pos(node, link_id):
        rows, _ = _socket_rows(node)
        row = rows.index(link_id) if link_id in rows else 0
        return tx(node["pos"][0], node["pos"][1] + 30 + slot_gap * row + 11)

    # nodes first, links on top (as the frontend draws them by default they sit under; on top reads better small)
    title_font = _font(max(9, int(20 * scale)))
    for node in nodes:
        nx, ny = node["pos"]
        w, h = node["size"]
        note = node["type"] in ("MarkdownNote", "Note")
        box = [*tx(nx, ny), *tx(nx + w, ny + h)]
        draw.rounded_rectangle(box, radius=max(2, int(8 * scale)), fill=NOTE_BODY if note else NODE_BODY)
        bar = [*tx(nx, ny), *tx(nx + w, ny + 30)]
        colour = PACK_TITLE if node["type"].startswith("VEK_") else (NOTE_BODY if note else NODE_TITLE)
        draw.rounded_rectangle(bar, radius=max(2, int(8 * scale)), fill=colour)
        label = node.get("title") or object_info.get(node["type"], {}).get("display_name") or node["type"]
        max_chars = max(4, int(w * scale / max(5.0, 11 * scale)))
        if len(label) > max_chars:
            label = label[: max_chars - 1] + "…"
        draw.text(tx(nx + 10, ny + 5), label, fill=TEXT, font=title_font)
        if note:
            small = _font(max(8, int(15 * scale)))
            text = node.get("widgets_values", [""])[0]
            for mark in ("#", "*", "`", "_"):
                text = text.replace(mark, "")
            lines = _wrap(draw, " ".join(text.split()), small, (w - 20) * scale)
            line_h = max(9, int(20 * scale))
            for j, line in enumerate(lines[: max(1, int((h - 40) * scale / line_h))]):
                draw.text(tx(nx + 10, ny + 38 + j * line_h / scale), line, fill=(200, 200, 190), font=small)
        else:
            rows, n_out = _socket_rows(node)
            r = max(1.5, 4 * scale)
            for i, link in enumerate(rows):
                cx, cy = tx(nx, ny + 30 + slot_gap * i + 11)
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(150, 150, 150) if link is None else (220, 220, 220))
            for i in range(n_out):
                cx, cy = out_pos(node, i)
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 220, 220))

    line_w = max(1, int(round(3 * scale)))
    for link_id, src, src_slot, dst, _dst_slot, ltype in ui.get("links", []):
        if src not in by_id or dst not in by_id:
            continue
        colour = LINK_COLOURS.get(str(ltype), (160, 160, 160))
        draw.line(_bezier(out_pos(by_id[src], src_slot), in_pos(by_id[dst], link_id)), fill=colour, width=line_w,
                  joint="curve")

    draw.rectangle([0, 0, width, banner - 8], fill=(24, 24, 26))
    label_font = _font(12)
    label = "video-enhance-kit"
    room = width - 32 - draw.textlength(label, font=label_font) - 16
    size = 22
    while size > 11 and draw.textlength(title, font=_font(size)) > room:
        size -= 1
    shown = title
    while draw.textlength(shown, font=_font(size)) > room and len(shown) > 4:
        shown = shown[:-2] + "…"
    draw.text((16, 10 + (22 - size) // 2), shown, fill=(255, 255, 255), font=_font(size))
    draw.text((width - 16 - draw.textlength(label, font=label_font), 30), label, fill=(130, 170, 200), font=label_font)
    return img


def _wrap(draw, text: str, font, max_width: float) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels."""
    lines, current = [], ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > max_width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def thumbnail_bytes(ui: dict, title: str, object_info: dict | None = None) -> bytes:
    """The JPEG bytes of :func:`render_thumbnail` (deterministic for a given Pillow)."""
    import io

    buf = io.BytesIO()
    render_thumbnail(ui, title, object_info).save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


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

    from video_enhance_kit.nodes._host import ComfyHost, HostError

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
