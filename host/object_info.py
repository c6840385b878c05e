"""/object_info entries built in-process, as ComfyUI's server builds them (imports ComfyUI when called)."""

from __future__ import annotations

import json
import logging
import traceback

log = logging.getLogger("video_enhance_kit.host")


def node_class(class_type: str):
    """The node class ComfyUI registered under ``class_type`` (KeyError naming it otherwise)."""
    import nodes

    try:
        return nodes.NODE_CLASS_MAPPINGS[class_type]
    except KeyError:
        raise KeyError(f"ComfyUI has no node {class_type!r}") from None


def _v1_info(cls, class_type: str) -> dict:
    import nodes

    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {k: list(v.keys()) for k, v in inputs.items()},
        "output": cls.RETURN_TYPES,
        "output_is_list": getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES)),
        "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
        "name": class_type,
        "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(class_type, class_type),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = cls.OUTPUT_TOOLTIPS
    return info


def node_info(class_type: str) -> dict:
    """/object_info entry of one node (V3 nodes give their V1-compatible info, as the server does)."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = node_class(class_type)
    if issubclass(cls, _ComfyNodeInternal):
        return cls.GET_NODE_INFO_V1()
    return _v1_info(cls, class_type)


def object_info() -> dict:
    """What GET /object_info returns, for every registered node (JSON-round-tripped)."""
    import folder_paths

    import nodes

    out = {}
    with folder_paths.cache_helper:
        for name in list(nodes.NODE_CLASS_MAPPINGS):
            try:
                out[name] = node_info(name)
            except Exception:  # noqa: BLE001 (the server logs and skips such nodes too)
                log.error("object_info failed for %s:\n%s", name, traceback.format_exc())
    return json.loads(json.dumps(out, default=str))
