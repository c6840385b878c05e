"""Workflow authoring: an API-format prompt -> the frontend's UI format (``api_to_ui``), as ComfyUI saves it.

Used by assets/make_workflows.py (and tests). Widget values follow the frontend's order: inputs in
``input_order``, a ``control_after_generate`` value after seed widgets, and last the value of the
upload widget the frontend adds to a node with a media combo (LoadImage, LoadVideo: ``[file, "image"]``,
as ComfyUI's own templates store it; comfy-cli's converter ignores that trailing value). Nothing here imports ComfyUI; it works from an /object_info description.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from video_enhance_kit.host.prompt import is_link, spec_options

_WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: Combo options after which the frontend adds an upload widget (whose stored value is "image").
MEDIA_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_WIDGET_VALUE = "image"
NODE_WIDTH = 320
COLUMN_GAP = 60
ROW_GAP = 40


def input_specs(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, required) for every input of a node, in the frontend's order."""
    out = []
    inputs = info.get("input", {}) or {}
    order = info.get("input_order", {}) or {}
    for section in ("required", "optional"):
        sec = inputs.get(section) or {}
        names = [n for n in order.get(section, []) if n in sec] + [n for n in sec if n not in order.get(section, [])]
        out += [(name, sec[name], section == "required") for name in names]
    return out


def is_widget_spec(spec: Any) -> bool:
    """True if the frontend draws a widget (and keeps a widgets_values slot) for this input spec."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return False
    opts = spec_options(spec)
    if opts.get("forceInput") or opts.get("defaultInput"):
        return False
    return isinstance(spec[0], (list, tuple)) or spec[0] in _WIDGET_TYPES


def is_media_upload(spec: Any) -> bool:
    """True for a combo the frontend gives an upload widget (LoadImage's ``image``, LoadVideo's ``file``)."""
    combo = isinstance(spec, (list, tuple)) and bool(spec) and (isinstance(spec[0], (list, tuple)) or spec[0] == "COMBO")
    return combo and any(spec_options(spec).get(k) is True for k in MEDIA_UPLOAD_OPTIONS)


def has_control_after_generate(name: str, spec: Any) -> bool:
    """True if the frontend adds a control_after_generate companion after this widget (seeds)."""
    opts = spec_options(spec)
    if opts.get("control_after_generate") is not None:
        return bool(opts["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def default_of(spec: Any) -> Any:
    """The default a widget shows before the user touches it."""
    opts = spec_options(spec)
    if "default" in opts:
        return opts["default"]
    if isinstance(spec[0], (list, tuple)):
        return spec[0][0] if spec[0] else None
    if spec[0] == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec[0])


def widget_count(info: dict) -> int:
    """How many ``widgets_values`` the frontend keeps for a node with this /object_info entry."""
    specs = input_specs(info)
    count = sum(1 + has_control_after_generate(name, spec) for name, spec, _ in specs if is_widget_spec(spec))
    return count + _upload_slots(info)


def _upload_slots(info: dict) -> int:
    """1 if the frontend adds an upload widget to this node (not counted in the drawn node height), else 0."""
    return int(any(required and is_media_upload(spec) for _, spec, required in input_specs(info)))


def _socket_type(spec: Any) -> str:
    t = spec[0] if isinstance(spec, (list, tuple)) and spec else "*"
    return "COMBO" if isinstance(t, (list, tuple)) else str(t)


def _depths(prompt: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str, stack: tuple = ()) -> int:
        if nid in depth:
            return depth[nid]
        if nid in stack:
            return 0
        parents = [v[0] for v in prompt[nid].get("inputs", {}).values() if is_link(v) and v[0] in prompt]
        d = 1 + max((visit(p, stack + (nid,)) for p in parents), default=-1)
        depth[nid] = d
        return d

    for nid in prompt:
        visit(nid)
    return depth


def _node_height(n_inputs: int, n_outputs: int, n_widgets: int) -> int:
    return 30 + 22 * max(n_inputs, n_outputs) + 24 * n_widgets + 10


class _Links:
    """The UI links being built: ``[id, src, src_slot, dst, dst_slot, type]`` and the ids per output."""

    def __init__(self):
        self.links: list[list] = []
        self.by_output: dict[tuple[str, int], list[int]] = {}

    def add(self, src: str, slot: int, dst: str, ltype: Any) -> int:
        link_id = len(self.links) + 1
        self.links.append([link_id, int(src), slot, int(dst), None, "COMBO" if isinstance(ltype, (list, tuple)) else ltype])
        self.by_output.setdefault((src, slot), []).append(link_id)
        return link_id


def _widget_values(name: str, spec: Any, value: Any, linked: bool, present: bool, control: str) -> list:
    """The widgets_values slots of one widget input (its value, then a control_after_generate value)."""
    if linked or not present:
        values = [default_of(spec)]
    else:
        values = [value["__value__"] if isinstance(value, dict) and "__value__" in value else value]
    return values + ([control] if has_control_after_generate(name, spec) else [])


def _link_type(prompt: dict, object_info: dict, src: str, slot: int, fallback: str):
    outputs = object_info[prompt[src]["class_type"]].get("output", [])
    return outputs[slot] if slot < len(outputs) else fallback


def _ui_inputs(nid: str, prompt: dict, object_info: dict, links: _Links, control: str) -> tuple[list, list]:
    """The node's UI inputs (sockets and widgets) and its widgets_values."""
    values = prompt[nid].get("inputs", {})
    ui_inputs, widgets, upload = [], [], False
    for name, spec, required in input_specs(object_info[prompt[nid]["class_type"]]):
        value, entry = values.get(name, None), {"name": name, "type": _socket_type(spec), "link": None}
        if is_widget_spec(spec):
            entry["widget"] = {"name": name}
            widgets += _widget_values(name, spec, value, is_link(value), name in values, control)
        if is_link(value):
            entry["link"] = links.add(value[0], value[1], nid, _link_type(prompt, object_info, value[0], value[1], entry["type"]))
        upload |= required and is_media_upload(spec)
        ui_inputs.append(entry)
    for slot_index, entry in enumerate(ui_inputs):
        if entry["link"] is not None:
            links.links[entry["link"] - 1][4] = slot_index
    return ui_inputs, widgets + [UPLOAD_WIDGET_VALUE] if upload else widgets


def _ui_outputs(info: dict) -> list[dict]:
    names = info.get("output_name") or info.get("output") or []
    return [{"name": names[slot] if slot < len(names) else str(otype),
             "type": "COMBO" if isinstance(otype, (list, tuple)) else otype, "links": None, "slot_index": slot}
            for slot, otype in enumerate(info.get("output", []))]


def _ui_node(nid: str, prompt: dict, object_info: dict, links: _Links, control: str) -> dict:
    node, ctype = prompt[nid], prompt[nid]["class_type"]
    if ctype not in object_info:
        raise KeyError(f"node {nid}: ComfyUI has no node {ctype!r} (is its pack loaded?)")
    info = object_info[ctype]
    ui_inputs, widgets = _ui_inputs(nid, prompt, object_info, links, control)
    outputs = _ui_outputs(info)
    n_sockets_in = sum(1 for e in ui_inputs if "widget" not in e)
    ui_node = {
        "id": int(nid), "type": ctype, "pos": [0, 0],
        "size": [NODE_WIDTH, _node_height(n_sockets_in, len(outputs), len(widgets) - _upload_slots(info))],
        "flags": {}, "order": 0, "mode": 0, "inputs": ui_inputs, "outputs": outputs,
        "properties": {"Node name for S&R": ctype}, "widgets_values": widgets,
    }
    meta_title = (node.get("_meta") or {}).get("title")
    if meta_title and meta_title != info.get("display_name", ctype):
        ui_node["title"] = meta_title
    return ui_node


def _band_column(prompt, members, d, depth, ui_nodes, positions, centre_y, band_top) -> int:
    """Place the nodes of one group band at graph depth ``d``; return the column's bottom."""
    def key(nid: str):
        parents = [v[0] for v in prompt[nid].get("inputs", {}).values() if is_link(v) and v[0] in centre_y]
        bary = sum(centre_y[p] for p in parents) / len(parents) if parents else 0.0
        return (bary, int(nid))

    x, y = 50 + d * (NODE_WIDTH + COLUMN_GAP), band_top
    for nid in sorted((n for n in members if depth[n] == d), key=key):
        ui_nodes[nid]["pos"] = list(positions.get(nid, (x, y)))
        centre_y[nid] = ui_nodes[nid]["pos"][1] + ui_nodes[nid]["size"][1] / 2
        y += ui_nodes[nid]["size"][1] + ROW_GAP
    return y


def _layout(prompt: dict, ui_nodes: dict, depth: dict, positions: dict, groups: list[dict]) -> None:
    """Columns by graph depth; each group is a horizontal band (groups in the order given, then the
    ungrouped nodes), so group boxes never overlap; in a band's column, nodes sorted by the mean height
    of their inputs (fewer crossing links), then by id."""
    group_of: dict[str, int] = {}
    for gi, g in enumerate(groups):
        for n in g.get("nodes", []):
            group_of.setdefault(str(n), gi)
    centre_y: dict[str, float] = {}
    band_top = 80
    for band in range(len(groups) + 1):
        members = [nid for nid in prompt if group_of.get(nid, len(groups)) == band]
        if not members:
            continue
        bottom = band_top
        for d in sorted({depth[nid] for nid in prompt}):
            bottom = max(bottom, _band_column(prompt, members, d, depth, ui_nodes, positions, centre_y, band_top))
        band_top = bottom + 60  # room for the next group's title bar
    for i, nid in enumerate(sorted(prompt, key=lambda n: (depth[n], int(n)))):
        ui_nodes[nid]["order"] = i


def _note_nodes(notes: list[dict], nodes_list: list[dict], next_id: int) -> list[dict]:
    """MarkdownNote nodes (UI only) for ``notes``; ids from ``next_id``."""
    out = []
    for note in notes:
        size = list(note.get("size", (NODE_WIDTH, 160)))
        below = max((n["pos"][1] + n["size"][1] for n in nodes_list + out), default=0) + ROW_GAP
        out.append({"id": next_id + len(out), "type": "MarkdownNote", "pos": list(note.get("pos", (50, below))),
                    "size": size, "flags": {}, "order": len(nodes_list) + len(out), "mode": 0, "inputs": [],
                    "outputs": [], "properties": {}, "widgets_values": [note["text"]],
                    **({"title": note["title"]} if note.get("title") else {})})
    return out


def _group_boxes(groups: list[dict], ui_nodes: dict) -> list[dict]:
    boxes = []
    for g in groups:
        members = [ui_nodes[str(n)] for n in g.get("nodes", []) if str(n) in ui_nodes]
        if not members:
            continue
        x0 = min(m["pos"][0] for m in members) - 20
        y0 = min(m["pos"][1] for m in members) - 60
        x1 = max(m["pos"][0] + m["size"][0] for m in members) + 20
        y1 = max(m["pos"][1] + m["size"][1] for m in members) + 20
        boxes.append({"id": len(boxes) + 1, "title": g["title"], "bounding": [x0, y0, x1 - x0, y1 - y0],
                      "color": g.get("color", "#3f789e"), "font_size": 24, "flags": {}})
    return boxes


def api_to_ui(prompt: dict, object_info: dict, *, title: str | None = None,
              positions: dict[str, tuple[float, float]] | None = None, groups: list[dict] | None = None,
              notes: list[dict] | None = None, control_after_generate: str = "fixed") -> dict:
    """A UI-format (frontend) workflow from an API-format ``prompt``.

    Node ids must be integer strings ("1", "2", ...): they are kept, so ``convert_ui_to_api`` of the
    result gives back ``prompt`` (plus defaults for inputs it left out, and ``_meta`` titles).
    Nodes are laid out left to right by graph depth unless ``positions`` ({id: (x, y)}) says otherwise.
    ``groups``: ``[{"title": str, "nodes": [ids], "color": "#rrggbb"?}]`` boxes around nodes.
    ``notes``: ``[{"text": str, "pos": (x, y)?, "size": (w, h)?}]`` MarkdownNote nodes (UI only).
    """
    for nid in prompt:
        if not str(nid).isdigit():
            raise ValueError(f"node id {nid!r}: UI workflows need integer node ids ('1', '2', ...)")
    links, groups = _Links(), groups or []
    ui_nodes = {nid: _ui_node(nid, prompt, object_info, links, control_after_generate) for nid in sorted(prompt, key=int)}
    for (src, slot), ids in links.by_output.items():
        ui_nodes[src]["outputs"][slot]["links"] = ids
    _layout(prompt, ui_nodes, _depths(prompt), positions or {}, groups)
    nodes_list = [ui_nodes[nid] for nid in sorted(prompt, key=int)]
    next_id = max([int(n) for n in prompt] + [0]) + 1
    nodes_list += _note_nodes(notes or [], nodes_list, next_id)
    extra: dict[str, Any] = {"ds": {"scale": 0.8, "offset": [0, 0]}}
    if title:
        extra["vek_title"] = title
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "video-enhance-kit:" + json.dumps(prompt, sort_keys=True, default=str))),
        "revision": 0, "last_node_id": next_id + len(notes or []) - 1, "last_link_id": len(links.links),
        "nodes": nodes_list, "links": links.links, "groups": _group_boxes(groups, ui_nodes), "config": {},
        "extra": extra, "version": 0.4,
    }
