"""Headless runner: ``python -m video_enhance_kit run|doctor``.

``run WORKFLOW.json`` runs a UI-format (graph editor) or API-format workflow

- in-process (default): ComfyUI is located (``--comfyui PATH``, ``COMFYUI_PATH``, or the pack sitting
  in ``ComfyUI/custom_nodes``) and driven through :mod:`video_enhance_kit.nodes._host`;
- on a running server (``--server http://127.0.0.1:8188``): GET /object_info, POST /prompt, progress
  over the websocket (or by polling /history), outputs fetched through /view into ``--out``.

``--set NODE_ID.INPUT=VALUE`` overrides an input; the value is coerced by the input's declared type in
/object_info (INT, FLOAT, BOOLEAN, STRING, COMBO). ``doctor`` checks an installation: finds ComfyUI,
loads the pack, runs every example workflow with tiny models and prints a table.

This module imports nothing from ComfyUI: the in-process host is imported only after ComfyUI has been
located, so ``--help``, argument parsing and server mode work without it.

Exit codes: 0 success, 1 the workflow failed (validation or execution; the message names the node),
2 usage error (bad arguments, unreadable workflow, bad ``--set``), 3 environment error (ComfyUI not
found or cannot start, server unreachable, comfy-cli missing for a UI-format workflow).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

PACK_ROOT = Path(__file__).resolve().parent
SAMPLE_CLIPS = ("vek_sample.mp4", "vek_sample_tiny.mp4")


class CliError(Exception):
    """An error the CLI reports as one message and an exit code (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Workflow files and --set
# ---------------------------------------------------------------------------------------------


def load_workflow(path: str | Path) -> dict:
    """Read a workflow JSON file (UI or API format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"workflow file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read workflow file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise CliError(f"workflow file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"workflow file {path} holds a JSON {type(data).__name__}, expected an object (UI or API format)")
    return data


def is_api_format(workflow: dict) -> bool:
    """True for the API ("prompt") format ``{id: {class_type, inputs}}``."""
    return (
        isinstance(workflow, dict)
        and bool(workflow)
        and "nodes" not in workflow
        and all(isinstance(v, dict) and "class_type" in v for v in workflow.values())
    )


def to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt of ``workflow`` (UI format converted with comfy-cli's converter)."""
    if is_api_format(workflow):
        return json.loads(json.dumps(workflow))  # a private copy
    if not isinstance(workflow.get("nodes"), list):
        raise CliError("the workflow is neither UI format (no 'nodes' list) nor API format ({id: {class_type, inputs}})")
    missing = sorted({str(n.get("type")) for n in workflow["nodes"] if isinstance(n, dict) and _is_real_node(n) and n.get("type") not in object_info})
    if missing:
        raise CliError(
            f"the workflow uses node types this ComfyUI does not know: {', '.join(missing)}; "
            "install the packs that provide them (or check that video-enhance-kit loaded: python -m video_enhance_kit doctor)",
            EXIT_FAILED,
        )
    try:
        from comfy_cli.workflow_to_api import WorkflowConversionError, convert_ui_to_api
    except ImportError:
        raise CliError(
            "converting a UI-format workflow needs comfy-cli: pip install comfy-cli (or pass an API-format workflow)",
            EXIT_ENV,
        ) from None
    try:
        return convert_ui_to_api(workflow, object_info)
    except WorkflowConversionError as e:
        raise CliError(f"cannot convert the UI-format workflow to API format: {e}") from None


def _is_real_node(node: dict) -> bool:
    """Nodes that execute (not notes, reroutes, primitives, muted or bypassed nodes, subgraph instances)."""
    kind = node.get("type")
    if kind in ("Note", "MarkdownNote", "PrimitiveNode", "Reroute", "GetNode", "SetNode"):
        return False
    if node.get("mode") in (2, 4):
        return False
    return isinstance(kind, str) and not _looks_like_uuid(kind)


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


@dataclass
class Override:
    """One ``--set NODE_ID.INPUT=VALUE``."""

    node_id: str
    input: str
    raw: str

    @classmethod
    def parse(cls, text: str) -> Override:
        target, sep, raw = text.partition("=")
        node_id, dot, name = target.strip().partition(".")
        if not sep or not dot or not node_id or not name:
            raise CliError(f"--set {text!r}: expected NODE_ID.INPUT=VALUE, e.g. --set 3.seed=42 or --set 7.text=\"a red fox\"")
        return cls(node_id.strip(), name.strip(), raw)


def input_spec(object_info: dict, class_type: str, name: str) -> list | None:
    """The ``[type, options]`` declaration of input ``name`` of ``class_type`` in /object_info (None if undeclared)."""
    info = object_info.get(class_type) or {}
    for section in ("required", "optional"):
        spec = (info.get("input") or {}).get(section, {}).get(name)
        if spec is not None:
            return list(spec) if isinstance(spec, (list, tuple)) else [spec]
    return None


def declared_inputs(object_info: dict, class_type: str) -> list[str]:
    info = object_info.get(class_type) or {}
    names: list[str] = []
    for section in ("required", "optional"):
        names += list((info.get("input") or {}).get(section, {}))
    return names


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(raw: str, spec: list, where: str) -> Any:
    """``raw`` converted to the type of ``spec`` (``[type, options]`` from /object_info), range-checked."""
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, (list, tuple)) or kind == "COMBO":
        choices = list(kind) if isinstance(kind, (list, tuple)) else list(opts.get("options", []))
        if not choices or raw in choices:
            return raw
        for choice in choices:  # numeric combos (e.g. [1, 2, 4]) are declared as numbers
            if not isinstance(choice, str) and str(choice) == raw:
                return choice
        shown = ", ".join(map(str, choices[:12])) + (", ..." if len(choices) > 12 else "")
        raise CliError(f"{where}: {raw!r} is not one of the choices: {shown}")
    if kind == "INT":
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            try:
                f = float(raw)
            except ValueError:
                f = math.nan
            if not math.isfinite(f) or f != int(f):
                raise CliError(f"{where} is an INT: {raw!r} is not a whole number") from None
            value = int(f)
        return _check_range(value, opts, where)
    if kind == "FLOAT":
        try:
            value = float(raw)
        except ValueError:
            raise CliError(f"{where} is a FLOAT: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise CliError(f"{where} is a FLOAT: {raw!r} is not a finite number")
        return _check_range(value, opts, where)
    if kind == "BOOLEAN":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise CliError(f"{where} is a BOOLEAN: {raw!r} is not one of true/false (also 1/0, yes/no, on/off)")
    if kind == "STRING":
        return raw
    # another type (a socket such as MODEL or a custom widget): accept JSON, else the text itself
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _check_range(value, opts: dict, where: str):
    low, high = opts.get("min"), opts.get("max")
    if low is not None and value < low or high is not None and value > high:
        raise CliError(f"{where}: {value} is outside its range [{low}, {high}]")
    return value


def apply_overrides(prompt: dict, overrides: Iterable[Override], object_info: dict) -> dict:
    """A copy of the API prompt with every override applied (values coerced by their declared types)."""
    prompt = json.loads(json.dumps(prompt))
    for o in overrides:
        node = prompt.get(o.node_id)
        if node is None:
            ids = ", ".join(f"{k} ({v.get('class_type')})" for k, v in sorted(prompt.items(), key=lambda kv: _id_key(kv[0])))
            raise CliError(f"--set {o.node_id}.{o.input}: the workflow has no node {o.node_id!r}; its nodes: {ids}")
        class_type = node.get("class_type")
        where = f"--set {o.node_id}.{o.input} (node {o.node_id}, {class_type})"
        spec = input_spec(object_info, class_type, o.input)
        if spec is None:
            names = declared_inputs(object_info, class_type) or sorted(node.get("inputs", {}))
            raise CliError(f"{where}: {class_type} has no input {o.input!r}; its inputs: {', '.join(names)}")
        current = node.get("inputs", {}).get(o.input)
        if _is_link(current):
            raise CliError(f"{where}: this input is connected to node {current[0]}'s output {current[1]}; --set changes widget values only")
        if o.raw in SAMPLE_CLIPS and spec and isinstance(spec[0], (list, tuple, str)):
            value = o.raw  # the runner places the bundled clips before running: not yet among the choices
        else:
            value = coerce(o.raw, spec, where)
        node.setdefault("inputs", {})[o.input] = value
    return prompt


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _id_key(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def referenced_sample_clips(prompt: dict) -> list[str]:
    """Bundled sample clips named by any input of the prompt (to place them where LoadVideo finds them)."""
    names = {v for node in prompt.values() for v in node.get("inputs", {}).values() if isinstance(v, str)}
    return [n for n in SAMPLE_CLIPS if n in names]


def sample_clip_path(name: str) -> Path:
    return PACK_ROOT / "assets" / name


# ---------------------------------------------------------------------------------------------
# Results, failures, progress
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a backend returns: success, outputs per node (ComfyUI's ui dicts), local files, the error."""

    ok: bool
    prompt_id: str = ""
    outputs: dict = field(default_factory=dict)
    files: list = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


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


PREVIEWS = "previews"  # sub-folder of --out for preview images (ComfyUI's temp outputs)


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


def describe_validation_error(error: Any, node_errors: dict, prompt: dict) -> str:
    """One message naming each failing node (id, type) and ComfyUI's reason, from a /prompt 400 reply."""
    lines = []
    for node_id, entry in sorted((node_errors or {}).items(), key=lambda kv: _id_key(str(kv[0]))):
        class_type = entry.get("class_type") or prompt.get(node_id, {}).get("class_type", "?")
        for err in entry.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name")
            detail = err.get("details") or ""
            text = err.get("message", "invalid")
            if name and name not in text and name not in detail:
                text += f" (input {name!r})"
            lines.append(f"node {node_id} ({class_type}): {text}" + (f": {detail}" if detail else ""))
    if isinstance(error, dict):
        head = error.get("message", "invalid prompt")
        if error.get("details"):
            head += f": {error['details']}"
    else:
        head = str(error or "invalid prompt")
    return "workflow failed validation: " + head + "".join("\n  " + line for line in lines)


def describe_execution_error(data: dict) -> str:
    """A message from an ``execution_error`` event: node id, type, exception type and message."""
    return (
        f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
        f"{data.get('exception_type', 'error')}: {str(data.get('exception_message', '')).strip()}"
    )


def error_from_status(status: dict | None) -> str:
    """The failure message from a history entry's ``status`` (execution_error or execution_interrupted)."""
    for event, data in (status or {}).get("messages", []):
        if event == "execution_error":
            return describe_execution_error(data)
        if event == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return "the workflow did not complete (no error message from ComfyUI)"


class Progress:
    """Prints execution events: which node runs, a step bar for nodes that report progress."""

    def __init__(self, prompt: dict | None = None, stream=None, quiet: bool = False):
        self.prompt = prompt or {}
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.node: str | None = None
        self.last_bar = ""
        self.executed: list[str] = []
        self.error: dict | None = None

    def _label(self, node_id) -> str:
        class_type = self.prompt.get(str(node_id), {}).get("class_type", "?")
        return f"node {node_id} ({class_type})"

    def _print(self, text: str, bar: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write(("\r\033[K" if self.last_bar else "") + text + ("" if bar else "\n"))
            self.last_bar = text if bar else ""
        elif not bar:
            self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, name: str, data: Any) -> None:
        """Handle one ComfyUI event (the websocket message ``{type, data}`` or a ``send_sync`` call)."""
        if not isinstance(data, dict):
            return
        if name == "executing":
            node = data.get("node")
            if node is not None and node != self.node:
                self.node = node
                self.executed.append(str(node))
                self._print(f"running {self._label(node)}")
        elif name == "execution_cached":
            nodes = data.get("nodes") or []
            if nodes:
                self._print(f"cached: {', '.join(map(str, nodes))}")
        elif name == "progress":
            value, total = data.get("value", 0), data.get("max", 0) or 1
            width = 24
            filled = int(width * value / total)
            bar = f"  [{'#' * filled}{'.' * (width - filled)}] {value}/{total} {self._label(data.get('node', self.node))}"
            if self.tty:
                self._print(bar, bar=True)
            elif value == total or value == 1:
                self._print(bar)
        elif name == "websocket_lost":
            self._print(f"lost the websocket ({data.get('reason')}); waiting by polling /history")
        elif name == "execution_error":
            self.error = data
        elif name == "execution_interrupted":
            self.error = {**data, "exception_type": "Interrupted", "exception_message": "processing was interrupted"}

    def close(self) -> None:
        if self.tty and self.last_bar and not self.quiet:
            self.stream.write("\n")
            self.last_bar = ""


# ---------------------------------------------------------------------------------------------
# Server mode
# ---------------------------------------------------------------------------------------------


class ServerClient:
    """A small client for ComfyUI's HTTP API (stdlib only; websocket-client used when importable)."""

    def __init__(self, url: str, timeout: float = 30.0):
        url = url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    # -- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach the ComfyUI server at {self.url}: {reason} (is it running? start it with python main.py --listen)", EXIT_ENV) from None

    def get_json(self, path: str):
        status, body = self._request("GET", path)
        if status != 200:
            raise CliError(f"GET {self.url}{path} answered HTTP {status}: {body[:200]!r}", EXIT_ENV)
        return json.loads(body)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def upload(self, path: Path, overwrite: bool = False) -> str:
        """POST /upload/image (ComfyUI's upload for any input file): the name it got in the input folder."""
        boundary = uuid.uuid4().hex
        parts = []
        for key, value in (("overwrite", "true" if overwrite else "false"), ("type", "input")):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        status, body = self._request("POST", "/upload/image", b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise CliError(f"uploading {path.name} to {self.url} failed: HTTP {status}", EXIT_ENV)
        return json.loads(body).get("name", path.name)

    def queue(self, prompt: dict) -> str:
        """POST /prompt; the prompt id, or a CliError naming each node that failed validation."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        status, raw = self._request("POST", "/prompt", body, {"Content-Type": "application/json"})
        try:
            reply = json.loads(raw)
        except json.JSONDecodeError:
            reply = {"error": raw[:300].decode("utf-8", "replace")}
        if status != 200:
            raise CliError(describe_validation_error(reply.get("error"), reply.get("node_errors") or {}, prompt), EXIT_FAILED)
        return reply["prompt_id"]

    def interrupt(self) -> None:
        """POST /interrupt: stop the prompt the server is running (best effort)."""
        try:
            self._request("POST", "/interrupt", b"{}", {"Content-Type": "application/json"})
        except CliError:
            pass

    def history(self, prompt_id: str) -> dict | None:
        entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
        return entry.get(prompt_id)

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        status, body = self._request("GET", f"/view?{query}")
        if status != 200:
            raise CliError(f"GET /view for {filename} answered HTTP {status}", EXIT_ENV)
        return body

    # -- following a prompt ---------------------------------------------------------------------
    def open_websocket(self):
        """A websocket-client connection to /ws, or None when websocket-client is missing or it fails."""
        try:
            import websocket  # websocket-client
        except ImportError:
            return None
        parsed = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parsed.scheme == "https" else "ws"
        try:
            ws = websocket.WebSocket()
            ws.connect(f"{scheme}://{parsed.netloc}{parsed.path}/ws?clientId={self.client_id}", timeout=self.timeout)
            return ws
        except Exception:  # noqa: BLE001  any failure to connect: poll /history instead
            return None

    def follow_websocket(self, ws, prompt_id: str, on_event: Callable[[str, Any], None], deadline: float | None) -> None:
        """Feed events of ``prompt_id`` to ``on_event`` until it finished (success, error or interruption)."""
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"timed out waiting for prompt {prompt_id}", EXIT_FAILED)
            # no timeout without --timeout: a node may run for minutes without a message
            ws.settimeout(None if deadline is None else max(0.1, deadline - time.monotonic()))
            message = ws.recv()
            if not isinstance(message, str):
                continue  # binary preview images
            msg = json.loads(message)
            name, data = msg.get("type"), msg.get("data") or {}
            if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
                continue
            on_event(name, data)
            if name in ("execution_success", "execution_error", "execution_interrupted"):
                return
            if name == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return

    def poll(self, prompt_id: str, deadline: float | None, interval: float = 0.25) -> dict:
        """Poll /history until the prompt's entry appears."""
        while True:
            entry = self.history(prompt_id)
            if entry is not None:  # written when the prompt finished (success or error)
                return entry
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"timed out waiting for prompt {prompt_id}", EXIT_FAILED)
            time.sleep(interval)


class ServerBackend:
    """Runs prompts on a running ComfyUI server.

    ``tiny``: loaders are pointed at the tiny models' file names; the server must list them (start it
    with an ``--extra-model-paths-config`` YAML whose folders hold the tiny-model cache).
    """

    def __init__(self, url: str, use_websocket: bool = True, timeout: float | None = None, tiny: bool = False):
        self.client = ServerClient(url)
        self.use_websocket = use_websocket
        self.timeout = timeout
        self.tiny = tiny
        self.substitutions: list[str] = []
        self._object_info: dict | None = None

    def prepare(self, prompt: dict) -> dict:
        if not self.tiny:
            return prompt
        prompt, self.substitutions = tiny_prompt(prompt)
        # loaders whose substitution is registered only inside the server (a pack's node file): a missing
        # model file becomes the tiny model the server lists for that input
        prompt, more = server_tiny_choices(prompt, self.object_info())
        self.substitutions += more
        missing = missing_choices(prompt, self.object_info())
        if missing:
            from .nodes import _tiny_models

            raise CliError(
                f"the server at {self.client.url} does not list the tiny models ({'; '.join(missing)}): start it with "
                f"--extra-model-paths-config naming the tiny-model folders under {_tiny_models.default_cache_dir()} "
                "(run the workflow in-process with --tiny once to build them)",
                EXIT_ENV,
            )
        return prompt

    def object_info(self) -> dict:
        if self._object_info is None:
            self._object_info = self.client.object_info()
        return self._object_info

    def place_sample_clips(self, prompt: dict) -> None:
        for name in referenced_sample_clips(prompt):
            self.client.upload(sample_clip_path(name), overwrite=True)

    def run(self, prompt: dict, progress: Progress, out_dir: Path) -> RunResult:
        start = time.monotonic()
        deadline = start + self.timeout if self.timeout else None
        ws = self.client.open_websocket() if self.use_websocket else None
        try:
            prompt_id = self.client.queue(prompt)
            try:
                if ws is not None:
                    try:
                        self.client.follow_websocket(ws, prompt_id, progress.event, deadline)
                    except CliError:
                        raise
                    except Exception as e:  # noqa: BLE001  a dropped connection: fall back to polling
                        progress.event("websocket_lost", {"reason": str(e)})
                entry = self.client.poll(prompt_id, deadline)
            except (KeyboardInterrupt, CliError):
                self.client.interrupt()  # Ctrl-C or --timeout: do not leave the server busy
                raise
        finally:
            if ws is not None:
                ws.close()
        progress.close()
        status = entry.get("status") or {}
        outputs = entry.get("outputs") or {}
        if status.get("status_str") == "error" or progress.error:
            error = describe_execution_error(progress.error) if progress.error else error_from_status(status)
            return RunResult(False, prompt_id, outputs, [], error, time.monotonic() - start)
        files = []
        for _node_id, item in output_entries(outputs):
            if item.get("type", "output") not in ("output", "temp"):
                continue
            data = self.client.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
            target = local_target(out_dir, item)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            files.append(target)
        return RunResult(True, prompt_id, outputs, files, "", time.monotonic() - start)


# ---------------------------------------------------------------------------------------------
# In-process mode (ComfyUI located, then driven through nodes/_host.py)
# ---------------------------------------------------------------------------------------------


def configure_logging(verbose: bool, err=None) -> None:
    """ComfyUI logs start-up warnings (e.g. its audio nodes without torchaudio) and node tracebacks
    through the root logger: show them only with ``--verbose`` (the runner prints its own one-line
    error; a handler on the root logger keeps logging's last-resort printer quiet, and records still
    reach the host's collectors)."""
    root = logging.getLogger()
    if any(getattr(h, "_vek_cli", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(err or sys.stderr)
    handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._vek_cli = True
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.INFO)


def cap_steps(prompt: dict, max_steps: int) -> tuple[dict, list[str]]:
    """Every literal ``steps`` input at most ``max_steps`` (start/end steps scaled), and the list of changes."""
    if max_steps < 1:
        raise CliError(f"--max-steps must be at least 1, got {max_steps}")
    return _host_module().cap_steps(prompt, max_steps)


def comfyui_version(root: Path) -> str:
    """ComfyUI's version from comfyui_version.py (read as text: nothing of ComfyUI is imported)."""
    import re

    try:
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (Path(root) / "comfyui_version.py").read_text())
    except OSError:
        match = None
    return match.group(1) if match else "unknown version"


def tiny_prompt(prompt: dict) -> tuple[dict, list[str]]:
    """The prompt with every known loader pointed at a tiny model file, and the list of changes."""
    return _host_module().substitute_tiny_models(prompt)


def _choices(spec: list | None):
    if not spec:
        return None
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return None


def server_tiny_choices(prompt: dict, object_info: dict) -> tuple[dict, list[str]]:
    """A copy of ``prompt`` where a combo value the host lacks is replaced by the ``vek-tiny-*`` file it offers there."""
    prompt = json.loads(json.dumps(prompt))
    changes = []
    for node_id, node in prompt.items():
        for name, value in node.get("inputs", {}).items():
            choices = _choices(input_spec(object_info, node.get("class_type"), name))
            if not choices or not isinstance(value, str) or value in choices or value in SAMPLE_CLIPS:
                continue
            tiny = sorted(c for c in choices if isinstance(c, str) and c.startswith("vek-tiny-"))
            if tiny:
                node["inputs"][name] = tiny[0]
                changes.append(f"{node_id} {node['class_type']}.{name}: {value!r} -> {tiny[0]!r} (the server's tiny model)")
    return prompt, changes


def missing_choices(prompt: dict, object_info: dict) -> list[str]:
    """``node.input=value`` for combo values the host does not offer (e.g. model files it lacks)."""
    missing = []
    for node_id, node in prompt.items():
        for name, value in node.get("inputs", {}).items():
            choices = _choices(input_spec(object_info, node.get("class_type"), name))
            if not isinstance(value, str):
                continue
            if choices is not None and value not in choices and value not in SAMPLE_CLIPS:
                missing.append(f"node {node_id} {name}={value}")
    return missing


def _host_module():
    """The in-process host module (imports nothing from ComfyUI until a host is started)."""
    from .nodes import _host

    return _host


def locate_comfyui(explicit: str | None = None) -> Path:
    """The ComfyUI root: ``--comfyui``, else ``COMFYUI_PATH``, else the folder whose custom_nodes holds this pack."""
    host = _host_module()
    root = host.find_comfyui(explicit)
    if root is None:
        raise CliError(host.describe_missing_comfyui(explicit) + " (or run on a server with --server http://127.0.0.1:8188)", EXIT_ENV)
    return root


class InProcessBackend:
    """Runs prompts in this process through :class:`video_enhance_kit.nodes._host.ComfyHost`.

    ComfyUI writes into the host's work folder; the files a run wrote are copied into ``--out``.
    ``tiny``: loaders are pointed at tiny random-weight models (built once, cached).
    """

    def __init__(self, comfyui: Path, tiny: bool = False, err=None, verbose: bool = False):
        self.tiny = tiny
        self.err = err or sys.stderr
        self.host_mod = _host_module()
        try:
            self.host = self.host_mod.ComfyHost.start(comfyui, tiny_models=tiny, strict=False)
        except self.host_mod.HostError as e:
            raise CliError(f"cannot start ComfyUI from {comfyui}: {e}", EXIT_ENV) from None
        # the samplers' tqdm bars would interleave with the runner's own step bars (kept with -v)
        comfy_utils = sys.modules.get("comfy.utils")
        if comfy_utils is not None and hasattr(comfy_utils, "set_progress_bar_enabled"):
            comfy_utils.set_progress_bar_enabled(verbose)

    def object_info(self) -> dict:
        return self.host.object_info()

    def import_failures(self) -> dict:
        return {f"video-enhance-kit ({i + 1})": msg for i, msg in enumerate(self.host.pack_errors)}

    def place_sample_clips(self, prompt: dict) -> None:
        for name in referenced_sample_clips(prompt):
            target = Path(self.host.input_dir) / name
            if not target.is_file() or target.stat().st_size != sample_clip_path(name).stat().st_size:
                shutil.copy2(sample_clip_path(name), target)

    def prepare(self, prompt: dict) -> dict:
        if not self.tiny:
            return prompt
        prompt, changes = self.host_mod.substitute_tiny_models(prompt)
        self.substitutions = changes
        return prompt

    def builtin_failures(self) -> list[str]:
        return list(self.host.builtin_import_failures)

    def run(self, prompt: dict, progress: Progress, out_dir: Path) -> RunResult:
        result = self.host.run_prompt(prompt, on_message=progress.event)
        progress.close()
        seconds = result.total_s
        if not result.success:
            e = result.error
            if result.node_errors:
                error = describe_validation_error({"message": "Prompt outputs failed validation"}, result.node_errors, prompt)
            elif progress.error:
                error = describe_execution_error(progress.error)
            elif e is None:
                error = "the workflow failed (no message from ComfyUI)"
            elif e.node_id is None:
                error = f"workflow failed validation: {e.message}"
            else:
                error = describe_execution_error({"node_id": e.node_id, "node_type": e.node_type, "exception_type": e.exception_type, "exception_message": e.message})
            return RunResult(False, result.prompt_id, result.outputs, [], error, seconds)
        # files the run wrote (saved outputs and previews), and previews the outputs name
        output_root = Path(self.host.output_dir)
        temp_root = Path(getattr(self.host, "temp_dir", Path(self.host.workdir) / "temp"))
        sources = [Path(p) for p in result.files]
        for _node_id, item in output_entries(result.outputs):
            if item.get("type") == "temp":
                sources.append(temp_root / (item.get("subfolder") or "") / item["filename"])
        files = []
        for path in dict.fromkeys(sources):
            if not path.is_file():
                continue
            if path.is_relative_to(temp_root):
                target = out_dir / PREVIEWS / path.relative_to(temp_root)
            elif path.is_relative_to(output_root):
                target = out_dir / path.relative_to(output_root)
            else:
                target = out_dir / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            files.append(target)
        return RunResult(True, result.prompt_id, result.outputs, files, "", seconds)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m video_enhance_kit",
        description="Run ComfyUI workflows headless and check a video-enhance-kit installation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,doctor}")

    run = sub.add_parser("run", help="run a workflow (UI or API format) in-process or on a server",
                         description="Run a UI-format or API-format workflow in-process (default) or on a running ComfyUI server.")
    run.add_argument("workflow", type=Path, help="workflow JSON file (UI format as saved by ComfyUI, or API format)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                     help="override an input, e.g. --set 3.seed=42 (repeatable); the value is coerced by the input's type")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--comfyui", metavar="PATH", help="ComfyUI folder for in-process runs (default: COMFYUI_PATH, or the custom_nodes this pack sits in)")
    where.add_argument("--server", metavar="URL", help="run on a running ComfyUI server instead, e.g. http://127.0.0.1:8188")
    run.add_argument("--out", type=Path, default=Path("out"), help="folder for the outputs (default: ./out)")
    run.add_argument("--tiny", action="store_true", help="substitute tiny random-weight models for the model files the workflow names (a smoke test without downloads; with --server, the server must list them)")
    run.add_argument("--max-steps", type=int, default=None, metavar="N", help="cap every sampler's steps at N (a quick preview or smoke test)")
    run.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (server mode)")
    run.add_argument("--no-websocket", action="store_true", help="server mode: poll /history instead of following the websocket")
    run.add_argument("--print-api", action="store_true", help="print the API-format prompt (after --set) and exit")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    run.add_argument("-v", "--verbose", action="store_true", help="show ComfyUI's log (start-up warnings, node messages)")

    doctor = sub.add_parser("doctor", help="check an installation: find ComfyUI, load the pack, run every example workflow with tiny models",
                            description="Find ComfyUI, load the pack, run every example workflow with tiny models, print a table.")
    where = doctor.add_mutually_exclusive_group()
    where.add_argument("--comfyui", metavar="PATH", help="ComfyUI folder (default: COMFYUI_PATH, or the custom_nodes this pack sits in)")
    where.add_argument("--server", metavar="URL", help="check a running server instead (through POST /prompt); it must list the tiny models (see README)")
    doctor.add_argument("--timeout", type=float, default=None, help="server mode: give up on a workflow after this many seconds")
    doctor.add_argument("--workflows", type=Path, default=PACK_ROOT / "example_workflows", help="folder of workflows to run (default: the pack's example_workflows)")
    doctor.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: a temporary folder)")
    doctor.add_argument("--max-steps", type=int, default=3, metavar="N", help="cap every sampler's steps at N (default 3, as the host tests do: every node still runs)")
    doctor.add_argument("-v", "--verbose", action="store_true", help="show ComfyUI's log")
    return parser


def cmd_run(args, out=sys.stdout, err=sys.stderr, backend=None) -> int:
    workflow = load_workflow(args.workflow)
    overrides = [Override.parse(s) for s in args.overrides]
    if backend is None:
        if args.server:
            backend = ServerBackend(args.server, use_websocket=not args.no_websocket, timeout=args.timeout, tiny=args.tiny)
        else:
            configure_logging(args.verbose, err)
            backend = InProcessBackend(locate_comfyui(args.comfyui), tiny=args.tiny, err=err, verbose=args.verbose)
    failures = backend.import_failures() if hasattr(backend, "import_failures") else {}
    for name, message in failures.items():
        err.write(f"warning: {name} failed to import: {message}\n")
    object_info = backend.object_info()
    prompt = apply_overrides(to_api(workflow, object_info), overrides, object_info)
    if hasattr(backend, "prepare"):
        prompt = backend.prepare(prompt)
        for change in getattr(backend, "substitutions", []):
            err.write(f"tiny model: {change}\n")
    if args.max_steps is not None:
        prompt, changes = cap_steps(prompt, args.max_steps)
        for change in changes:
            err.write(f"max steps: {change}\n")
    if args.print_api:
        out.write(json.dumps(prompt, indent=2) + "\n")
        return EXIT_OK
    backend.place_sample_clips(prompt)
    args.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(prompt, stream=err, quiet=args.quiet)
    result = backend.run(prompt, progress, args.out)
    if not result.ok:
        hint = "" if args.server or args.verbose else " (run with -v for ComfyUI's log)"
        err.write(f"error: {result.error}{hint}\n")
        return EXIT_FAILED
    out.write(f"done in {result.seconds:.1f} s (prompt {result.prompt_id})\n")
    shown: dict[str, str] = {}
    for node_id, text in text_outputs(result.outputs):
        label = f"node {node_id} ({prompt.get(node_id, {}).get('class_type', '?')})"
        if text in shown:
            out.write(f"{label} shows the same text as {shown[text]}\n")
            continue
        shown[text] = label
        out.write(f"{label} shows:\n" + "".join(f"  {line}\n" for line in text.rstrip().splitlines()))
    if result.files:
        out.write("outputs:\n" + "".join(f"  {p}\n" for p in result.files))
    else:
        out.write("the workflow wrote no output files\n")
    return EXIT_OK


def format_table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def cmd_doctor(args, out=sys.stdout, err=sys.stderr, backend=None) -> int:
    import tempfile

    if backend is None and getattr(args, "server", None):
        out.write(f"ComfyUI server: {args.server}\n")
        backend = ServerBackend(args.server, timeout=args.timeout, tiny=True)
    if backend is None:
        comfyui = locate_comfyui(args.comfyui)
        out.write(f"ComfyUI: {comfyui} ({comfyui_version(comfyui)})\n")
        configure_logging(args.verbose, err)
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="vek_doctor_"))
        backend = InProcessBackend(comfyui, tiny=True, err=err, verbose=args.verbose)
    else:
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="vek_doctor_"))
    failures = backend.import_failures() if hasattr(backend, "import_failures") else {}
    object_info = backend.object_info()
    ours = sorted(k for k in object_info if k.startswith("VEK_"))
    builtin = backend.builtin_failures() if hasattr(backend, "builtin_failures") else []
    if builtin:
        out.write(f"note: ComfyUI's own {', '.join(builtin)} did not import (not this pack; e.g. no torchaudio)\n")
    for name, message in failures.items():
        out.write(f"import failed: {name}: {message}\n")
    out.write(f"video-enhance-kit: {len(ours)} nodes registered\n")
    rows, failed = [], bool(failures) or not ours
    workflows = sorted(Path(args.workflows).glob("*.json"))
    if not workflows:
        out.write(f"no workflows in {args.workflows}\n")
        failed = True
    for path in workflows:
        err.write(f"doctor: running {path.name} ...\n")
        err.flush()
        start = time.monotonic()
        try:
            prompt = backend.prepare(to_api(load_workflow(path), object_info))
            if args.max_steps is not None:
                prompt = cap_steps(prompt, args.max_steps)[0]
            backend.place_sample_clips(prompt)
            result = backend.run(prompt, Progress(prompt, quiet=True), out_dir)
            status, message = ("pass", f"{len(result.files)} file(s)") if result.ok else ("FAIL", result.error)
        except CliError as e:
            status, message = "FAIL", str(e)
        except Exception as e:  # noqa: BLE001  doctor reports every workflow, whatever breaks
            status, message = "FAIL", f"{type(e).__name__}: {e}"
        failed |= status != "pass"
        seconds = time.monotonic() - start
        err.write(f"doctor: {path.name}: {status} ({seconds:.1f} s)\n")
        rows.append((path.name, status, f"{seconds:.1f}", message.replace("\n", " | ")))
    if rows:
        out.write(format_table(rows, ("workflow", "status", "seconds", "message")) + "\n")
    out.write("doctor: " + ("FAILED" if failed else "all checks passed") + "\n")
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, out, err)
        return cmd_doctor(args, out, err)
    except CliError as e:
        err.write(f"error: {e}\n")
        return e.code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
