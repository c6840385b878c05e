"""Host-free parts of the batch runner: inputs, the video-loading node, the frame rule, jobs.

A job is one workflow run on one input (or one segment of a long input). The workflow's video-loading node
is found by its type (:data:`VIDEO_LOADERS`) or named with ``--input-node ID.INPUT``; the worker points that
input at the file it placed in its ComfyUI's input folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.segments import FrameRule
from .errors import UsageError
from .prompt import is_api_format, is_real_node
from .video_io import VIDEO_SUFFIXES

#: Video loaders and the input that names the file: ComfyUI's own and VideoHelperSuite's.
VIDEO_LOADERS = {
    "LoadVideo": "file",
    "VHS_LoadVideo": "video",
    "VHS_LoadVideoFFmpeg": "video",
    "VHS_LoadVideoPath": "video",
    "VHS_LoadVideoFFmpegPath": "video",
}
#: Loaders that take a path (the worker gives its absolute path) rather than a name in the input folder.
PATH_LOADERS = ("VHS_LoadVideoPath", "VHS_LoadVideoFFmpegPath")
#: A workflow whose node types or model names match this runs a 4x-temporal video VAE (4k + 1 frames).
TEMPORAL_4X = re.compile(r"wan|hunyuanvideo|hunyuan_video|EmptyHunyuanLatentVideo", re.IGNORECASE)

#: Values that name model files (prompt texts are not searched: "a swan" is no Wan).
MODEL_FILE = re.compile(r"\.(safetensors|sft|ckpt|pt|pth|gguf|bin)$", re.IGNORECASE)


@dataclass(frozen=True)
class InputNode:
    """The node (id, class) whose input ``name`` gets the file of each job."""

    node_id: str
    class_type: str
    name: str

    @property
    def takes_path(self) -> bool:
        return self.class_type in PATH_LOADERS


@dataclass
class Job:
    """One run: ``input`` (the user's file), ``name`` (its folder under --out), ``segment`` (index, start, end)."""

    id: str
    input: Path
    name: str
    segment: tuple[int, int, int] | None = None
    source: Path | None = None  # a segment's clip (else the input itself), read when the job is sent
    attempts: int = 0
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name if self.segment is None else f"{self.name}#{self.segment[0]}"

    @property
    def file_name(self) -> str:
        """The name the worker gives the clip in its input folder (unique per job)."""
        if self.segment is None:
            return f"vekbatch_{self.id}_{self.input.name}"
        return f"vekbatch_{self.id}_{self.input.stem}_seg{self.segment[0]:03d}.mkv"


def job_prompt(prompt: dict, node: InputNode, clip: Path) -> dict:
    """A copy of the API ``prompt`` whose loader reads ``clip`` (in the worker's input folder): by absolute path for
    :data:`PATH_LOADERS`, else by its name in the input folder. ``prompt`` itself is not changed."""
    job = {k: {**v, "inputs": dict(v.get("inputs", {}))} for k, v in prompt.items()}
    if node.node_id not in job:
        raise UsageError(f"--input-node {node.node_id}.{node.name}: the prompt has no node {node.node_id}")
    job[node.node_id]["inputs"][node.name] = str(clip) if node.takes_path else clip.name
    return job


def _nodes(workflow: dict) -> list[tuple[str, str, dict]]:
    """(id, class_type, inputs or widgets) of every node that executes, UI or API format."""
    if is_api_format(workflow):
        return [(str(k), v.get("class_type", ""), v.get("inputs", {})) for k, v in workflow.items()]
    return [(str(n.get("id")), n.get("type", ""), {"widgets": n.get("widgets_values")})
            for n in workflow.get("nodes", []) if isinstance(n, dict) and is_real_node(n)]


def find_input_node(workflow: dict, explicit: str | None = None) -> InputNode:
    """The video-loading node: ``--input-node ID.INPUT`` when given, else the one loader of :data:`VIDEO_LOADERS`."""
    nodes = {node_id: class_type for node_id, class_type, _ in _nodes(workflow)}
    if explicit:
        node_id, dot, name = explicit.partition(".")
        if not dot or not name or node_id not in nodes:
            raise UsageError(f"--input-node {explicit!r}: expected ID.INPUT of a node of the workflow "
                             f"(ids: {', '.join(sorted(nodes))})")
        return InputNode(node_id, nodes[node_id], name)
    loaders = [(i, c) for i, c in nodes.items() if c in VIDEO_LOADERS]
    if not loaders:
        raise UsageError("the workflow has no video-loading node (" + ", ".join(VIDEO_LOADERS) + "): name the "
                         "input that takes the video with --input-node ID.INPUT, e.g. --input-node 2.file")
    if len(loaders) > 1:
        shown = ", ".join(f"{i} ({c})" for i, c in loaders)
        raise UsageError(f"the workflow has {len(loaders)} video-loading nodes ({shown}): choose one with "
                         f"--input-node ID.INPUT, e.g. --input-node {loaders[0][0]}.{VIDEO_LOADERS[loaders[0][1]]}")
    node_id, class_type = loaders[0]
    return InputNode(node_id, class_type, VIDEO_LOADERS[class_type])


def frame_rule(workflow: dict) -> FrameRule:
    """``FrameRule(4, 1)`` for a workflow with a Wan / 4x-temporal video model, else any count."""
    for _node_id, class_type, values in _nodes(workflow):
        names = [v for v in _flat(values) if isinstance(v, str) and (v.lower() == "wan" or MODEL_FILE.search(v))]
        if any(TEMPORAL_4X.search(t) for t in [class_type, *names]):
            return FrameRule(4, 1)
    return FrameRule()


def _flat(values) -> list:
    if isinstance(values, dict):
        return [x for v in values.values() for x in _flat(v)]
    if isinstance(values, (list, tuple)):
        return [x for v in values for x in _flat(v)]
    return [values]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """The input videos: files as given, folders' video files (by suffix, sorted); each once, absolute."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"--inputs {path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise UsageError(f"--inputs {' '.join(map(str, paths))}: no video file found (suffixes {', '.join(VIDEO_SUFFIXES)})")
    return unique


def output_names(inputs: list[Path]) -> dict[Path, str]:
    """The folder under --out of each input: its stem, ``stem-2``, ``stem-3`` ... when stems repeat."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in inputs:
        name, n = path.stem, 1
        while name in used:
            n += 1
            name = f"{path.stem}-{n}"
        used.add(name)
        names[path] = name
    return names


__all__ = ["PATH_LOADERS", "VIDEO_LOADERS", "InputNode", "Job", "expand_inputs", "find_input_node", "frame_rule", "job_prompt",
           "output_names"]
