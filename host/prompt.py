"""Host-free prompt transforms: formats, links, input specs, UI -> API conversion, step capping.

A prompt here is ComfyUI's API format ``{node_id: {"class_type": str, "inputs": {name: value}}}``
where a linked input is ``[source_id, output_slot]``. Nothing in this module imports ComfyUI; the
UI -> API conversion uses comfy-cli's converter with the host's /object_info.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from .errors import HostError, HostRunError, UsageError
from .locate import SAMPLE_CLIPS

#: Node types of a UI workflow that never execute (the converter drops them).
UI_ONLY_TYPES = ("Note", "MarkdownNote", "PrimitiveNode", "Reroute", "GetNode", "SetNode")


def is_link(value: Any) -> bool:
    """True for a linked input ``[source_node_id, output_slot]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def is_api_format(workflow: Any) -> bool:
    """True for the API ("prompt") format ``{id: {class_type, inputs}}``."""
    return (
        isinstance(workflow, dict)
        and bool(workflow)
        and "nodes" not in workflow
        and all(isinstance(v, dict) and "class_type" in v for v in workflow.values())
    )


def node_id_key(node_id: str):
    """Sort key: numeric ids in numeric order, then the others by name."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def is_real_node(node: dict) -> bool:
    """Nodes that execute (not notes, reroutes, primitives, muted or bypassed nodes, subgraph instances)."""
    kind = node.get("type")
    if kind in UI_ONLY_TYPES or node.get("mode") in (2, 4):
        return False
    return isinstance(kind, str) and not _looks_like_uuid(kind)


def to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt of ``workflow`` (a private copy; UI format converted with comfy-cli's converter)."""
    if is_api_format(workflow):
        return copy.deepcopy(workflow)
    if not isinstance(workflow.get("nodes"), list):
        raise UsageError("the workflow is neither UI format (no 'nodes' list) nor API format ({id: {class_type, inputs}})")
    nodes = [n for n in workflow["nodes"] if isinstance(n, dict) and is_real_node(n)]
    missing = sorted({str(n.get("type")) for n in nodes if n.get("type") not in object_info})
    if missing:
        raise HostRunError(
            f"the workflow uses node types this ComfyUI does not know: {', '.join(missing)}; "
            "install the packs that provide them (or check that video-enhance-kit loaded: python -m video_enhance_kit doctor)")
    try:
        from comfy_cli.workflow_to_api import WorkflowConversionError, convert_ui_to_api
    except ImportError:
        raise HostError("converting a UI-format workflow needs comfy-cli: pip install comfy-cli "
                        "(or pass an API-format workflow)") from None
    try:
        return convert_ui_to_api(workflow, object_info)
    except WorkflowConversionError as e:
        raise UsageError(f"cannot convert the UI-format workflow to API format: {e}") from None


def input_spec(object_info: dict, class_type: str, name: str) -> list | None:
    """The ``[type, options]`` declaration of input ``name`` of ``class_type`` in /object_info (None if undeclared)."""
    info = object_info.get(class_type) or {}
    for section in ("required", "optional"):
        spec = (info.get("input") or {}).get(section, {}).get(name)
        if spec is not None:
            return list(spec) if isinstance(spec, (list, tuple)) else [spec]
    return None


def declared_inputs(object_info: dict, class_type: str) -> list[str]:
    """Names of every input ``class_type`` declares (required first)."""
    info = object_info.get(class_type) or {}
    names: list[str] = []
    for section in ("required", "optional"):
        names += list((info.get("input") or {}).get(section, {}))
    return names


def spec_options(spec: Any) -> dict:
    """The options dict of an input spec ``[type, options]`` (empty when there is none)."""
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def choices(spec: list | None) -> list | None:
    """The values a combo input offers (None for other inputs)."""
    if not spec:
        return None
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == "COMBO":
        return list(spec_options(spec).get("options") or [])
    return None


def _is_step_count(name: str, value: Any) -> bool:
    return (name == "steps" or name.endswith("_steps")) and isinstance(value, int) and not isinstance(value, bool)


def _scale_edges(inputs: dict, old: int, new: int, where: str, changes: list[str]) -> None:
    """Scale ``start_at_step`` / ``end_at_step`` with a node's ``steps`` (two-stage graphs keep proportions)."""
    factor = new / old
    for key in ("start_at_step", "end_at_step"):
        edge = inputs.get(key)
        if isinstance(edge, int) and not isinstance(edge, bool) and edge <= old:
            inputs[key] = round(edge * factor)
            changes.append(f"{where}.{key}: {edge} -> {inputs[key]}")


def cap_steps(prompt: dict, max_steps: int) -> tuple[dict, list[str]]:
    """A copy of ``prompt`` where every literal ``steps`` or ``*_steps`` input is at most ``max_steps``.

    ``start_at_step`` / ``end_at_step`` of the same node scale with its ``steps`` (KSamplerAdvanced and
    the like), so a two-stage graph keeps its proportions. For fast smoke runs of user-sized workflows.
    """
    if max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1, got {max_steps}")
    out = copy.deepcopy(prompt)
    changes: list[str] = []
    for node_id, node in out.items():
        inputs = node.get("inputs", {})
        where = f"{node_id} {node.get('class_type')}"
        for name in list(inputs):
            value = inputs[name]
            if not _is_step_count(name, value) or value <= max_steps:
                continue
            inputs[name] = max_steps
            changes.append(f"{where}.{name}: {value} -> {max_steps}")
            if name == "steps":
                _scale_edges(inputs, value, max_steps, where, changes)
    return out, changes


def referenced_sample_clips(prompt: dict) -> list[str]:
    """Bundled sample clips named by any input of the prompt (to place them where LoadVideo finds them)."""
    names = {v for node in prompt.values() for v in node.get("inputs", {}).values() if isinstance(v, str)}
    return [n for n in SAMPLE_CLIPS if n in names]
