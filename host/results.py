"""What a run gives back (:class:`RunResult`, :class:`NodeError`) and the messages that name the failing node."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HostRunError
from .prompt import node_id_key

#: Sub-folder of ``--out`` for preview images (ComfyUI's temp outputs).
PREVIEWS = "previews"


@dataclass
class NodeError:
    """Where and why a prompt failed. ``kind``: "validation", "execution", "interrupted" or "incomplete"."""

    node_id: str | None
    node_type: str | None
    message: str
    exception_type: str = ""
    traceback: str = ""
    details: Any = None
    kind: str = "execution"

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.node_type})" if self.node_id is not None else "prompt"
        kind = f"{self.exception_type}: " if self.exception_type else ""
        return f"{where}: {kind}{self.message}"

    def describe(self) -> str:
        """The one-line report the runner prints (validation errors: one line per failing node)."""
        if self.kind in ("validation", "incomplete"):
            return self.message
        if self.kind == "interrupted" and self.exception_type == "":
            return f"interrupted at node {self.node_id} ({self.node_type})"
        return (f"node {self.node_id} ({self.node_type}) failed: "
                f"{self.exception_type or 'error'}: {str(self.message).strip()}")


@dataclass
class RunResult:
    """The outcome of running one prompt, in-process or on a server.

    ``outputs``: the UI outputs per node id (what /history shows: images, gifs, text, ...); ``files``:
    files written (in-process: the output and temp folders; the runner: copies under ``--out``);
    ``error``: the first failure (validation or execution), else None; ``node_errors``: ComfyUI's
    validation errors per node; ``timings``: seconds per executed node id; ``messages``: every
    (event, data) ComfyUI sent; ``substitutions``: what a tiny run changed; ``prompt``: the prompt run.
    """

    success: bool
    prompt_id: str = ""
    prompt: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    error: NodeError | None = None
    node_errors: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0
    messages: list = field(default_factory=list)
    substitutions: list = field(default_factory=list)

    @property
    def error_text(self) -> str:
        """The failure as the runner prints it ("" on success)."""
        if self.success:
            return ""
        return self.error.describe() if self.error else "the workflow failed (no message from ComfyUI)"

    def raise_for_error(self) -> RunResult:
        """Raise :class:`HostRunError` (node id, type and message) unless the run succeeded."""
        if not self.success:
            detail = ""
            if self.node_errors:
                detail = "\n" + json.dumps(self.node_errors, indent=1, default=str)[:4000]
            tb = f"\n{self.error.traceback}" if self.error and self.error.traceback else ""
            raise HostRunError(f"{self.error}{detail}{tb}")
        return self


def _node_error_lines(node_errors: dict, prompt: dict) -> list[str]:
    lines = []
    for node_id, entry in sorted((node_errors or {}).items(), key=lambda kv: node_id_key(str(kv[0]))):
        class_type = entry.get("class_type") or prompt.get(node_id, {}).get("class_type", "?")
        for err in entry.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name")
            detail = err.get("details") or ""
            text = err.get("message", "invalid")
            if name and name not in text and name not in detail:
                text += f" (input {name!r})"
            lines.append(f"node {node_id} ({class_type}): {text}" + (f": {detail}" if detail else ""))
    return lines


def describe_validation_error(error: Any, node_errors: dict, prompt: dict) -> str:
    """One message naming each failing node (id, type) and ComfyUI's reason (validate_prompt, a /prompt 400 reply)."""
    if isinstance(error, dict):
        head = error.get("message", "invalid prompt")
        if error.get("details"):
            head += f": {error['details']}"
    else:
        head = str(error or "invalid prompt")
    return "workflow failed validation: " + head + "".join("\n  " + line for line in _node_error_lines(node_errors, prompt))


def validation_error(error: dict | None, node_errors: dict, prompt: dict) -> NodeError:
    """The :class:`NodeError` of a failed validation: the first failing node, the message of all of them."""
    error = error or {}
    if not node_errors:
        return NodeError(None, None, describe_validation_error(error, {}, prompt),
                         error.get("type", "ValidationError"), details=error, kind="validation")
    node_id, info = next(iter(node_errors.items()))
    head = {"message": error.get("message", "Prompt outputs failed validation")}  # the node lines say the details
    return NodeError(str(node_id), info.get("class_type") or prompt.get(node_id, {}).get("class_type"),
                     describe_validation_error(head, node_errors, prompt), "ValidationError", details=info,
                     kind="validation")


def execution_error(event: str, data: dict) -> NodeError | None:
    """The :class:`NodeError` of an ``execution_error`` / ``execution_interrupted`` event, else None."""
    if event == "execution_error":
        return NodeError(str(data.get("node_id")), data.get("node_type"), str(data.get("exception_message", "")).strip(),
                         data.get("exception_type", ""), "".join(data.get("traceback") or []))
    if event == "execution_interrupted":
        return NodeError(str(data.get("node_id")), data.get("node_type"), "processing was interrupted",
                         "Interrupted", kind="interrupted")
    return None


def error_from_status(status: dict | None) -> NodeError:
    """The failure of a history entry's ``status`` (execution_error or execution_interrupted)."""
    for event, data in (status or {}).get("messages", []):
        if event == "execution_error":
            return execution_error(event, data)
        if event == "execution_interrupted":
            return NodeError(str(data.get("node_id")), data.get("node_type"), "interrupted", kind="interrupted")
    return NodeError(None, None, "the workflow did not complete (no error message from ComfyUI)", kind="incomplete")


def output_entries(outputs: dict) -> list[tuple[str, dict]]:
    """(node_id, {filename, subfolder, type}) for every file an output node reported."""
    out = []
    for node_id, ui in (outputs or {}).items():
        if not isinstance(ui, dict):
            continue
        for values in ui.values():
            if isinstance(values, (list, tuple)):
                out += [(str(node_id), v) for v in values if isinstance(v, dict) and "filename" in v]
    return out


def local_target(out_dir: Path, item: dict) -> Path:
    """Where an output file goes under ``--out``: saved files keep their sub-folder, previews go to previews/."""
    sub = item.get("subfolder", "") or ""
    base = out_dir / PREVIEWS if item.get("type", "output") == "temp" else out_dir
    target = base / sub / item["filename"]
    if not target.resolve().is_relative_to(base.resolve()):  # a name from the server never escapes --out
        target = base / Path(str(item["filename"])).name
    return target


def text_outputs(outputs: dict) -> list[tuple[str, str]]:
    """(node_id, text) for every text an output node showed (Preview Any, reports)."""
    found = []
    for node_id, ui in (outputs or {}).items():
        if isinstance(ui, dict):
            for value in ui.get("text") or []:
                if isinstance(value, str) and value.strip():
                    found.append((str(node_id), value))
    return found
