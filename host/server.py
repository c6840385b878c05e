"""A running ComfyUI server as a :class:`Backend`: GET /object_info, POST /prompt, the websocket or /history, /view.

Standard library only (websocket-client is used when it is importable, else /history is polled).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backend import Backend
from .errors import HostError, HostRunError, RunnerError
from .locate import sample_clip_path
from .progress import ProgressPrinter
from .prompt import referenced_sample_clips
from .results import (
    RunResult,
    describe_validation_error,
    error_from_status,
    local_target,
    output_entries,
)
from .tiny import missing_choices, server_tiny_choices, substitute_tiny_models
from .tiny_models import default_cache_dir

FINISHED = ("execution_success", "execution_error", "execution_interrupted")


def _multipart(boundary: str, path: Path, overwrite: bool) -> bytes:
    parts = []
    for key, value in (("overwrite", "true" if overwrite else "false"), ("type", "input")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


class ServerClient:
    """A small client for ComfyUI's HTTP API."""

    def __init__(self, url: str, timeout: float = 30.0):
        url = url.rstrip("/")
        self.url = url if "://" in url else "http://" + url
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise HostError(f"cannot reach the ComfyUI server at {self.url}: {reason} (is it running? start it with python main.py --listen)") from None

    def get_json(self, path: str):
        status, body = self._request("GET", path)
        if status != 200:
            raise HostError(f"GET {self.url}{path} answered HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def upload(self, path: Path, overwrite: bool = False) -> str:
        """POST /upload/image (ComfyUI's upload for any input file): the name it got in the input folder."""
        boundary = uuid.uuid4().hex
        status, body = self._request("POST", "/upload/image", _multipart(boundary, path, overwrite),
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise HostError(f"uploading {path.name} to {self.url} failed: HTTP {status}")
        return json.loads(body).get("name", path.name)

    def queue(self, prompt: dict) -> str:
        """POST /prompt; the prompt id, or a HostRunError naming each node that failed validation."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        status, raw = self._request("POST", "/prompt", body, {"Content-Type": "application/json"})
        try:
            reply = json.loads(raw)
        except json.JSONDecodeError:
            reply = {"error": raw[:300].decode("utf-8", "replace")}
        if status != 200:
            raise HostRunError(describe_validation_error(reply.get("error"), reply.get("node_errors") or {}, prompt))
        return reply["prompt_id"]

    def interrupt(self) -> None:
        """POST /interrupt: stop the prompt the server is running (best effort)."""
        try:
            self._request("POST", "/interrupt", b"{}", {"Content-Type": "application/json"})
        except HostError:
            pass

    def history(self, prompt_id: str) -> dict | None:
        entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
        return entry.get(prompt_id)

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        status, body = self._request("GET", f"/view?{query}")
        if status != 200:
            raise HostError(f"GET /view for {filename} answered HTTP {status}")
        return body

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

    def _next_event(self, ws, prompt_id: str, deadline: float | None) -> tuple[str, Any] | None:
        """The next text event of ``prompt_id`` (None for binary previews and other prompts' events)."""
        if deadline is not None and time.monotonic() > deadline:
            raise HostRunError(f"timed out waiting for prompt {prompt_id}")
        # no timeout without --timeout: a node may run for minutes without a message
        ws.settimeout(None if deadline is None else max(0.1, deadline - time.monotonic()))
        message = ws.recv()
        if not isinstance(message, str):
            return None  # binary preview images
        msg = json.loads(message)
        name, data = msg.get("type"), msg.get("data") or {}
        if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
            return None
        return name, data

    def follow_websocket(self, ws, prompt_id: str, on_event: Callable[[str, Any], None], deadline: float | None) -> None:
        """Feed events of ``prompt_id`` to ``on_event`` until it finished (success, error or interruption)."""
        while True:
            event = self._next_event(ws, prompt_id, deadline)
            if event is None:
                continue
            name, data = event
            on_event(name, data)
            if name in FINISHED or name == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return

    def poll(self, prompt_id: str, deadline: float | None, interval: float = 0.25) -> dict:
        """Poll /history until the prompt's entry appears (written when it finished: success or error)."""
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if deadline is not None and time.monotonic() > deadline:
                raise HostRunError(f"timed out waiting for prompt {prompt_id}")
            time.sleep(interval)


class ServerBackend(Backend):
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

    def object_info(self) -> dict:
        if self._object_info is None:
            self._object_info = self.client.object_info()
        return self._object_info

    def prepare(self, prompt: dict) -> dict:
        if not self.tiny:
            return prompt
        prompt, self.substitutions = substitute_tiny_models(prompt)
        # a loader whose file the server lacks gets the tiny model the server lists for that input
        prompt, more = server_tiny_choices(prompt, self.object_info())
        self.substitutions += more
        missing = missing_choices(prompt, self.object_info())
        if missing:
            raise HostError(
                f"the server at {self.client.url} does not list the tiny models ({'; '.join(missing)}): start it with "
                f"--extra-model-paths-config naming the tiny-model folders under {default_cache_dir()} "
                "(run the workflow in-process with --tiny once to build them)")
        return prompt

    def place_sample_clips(self, prompt: dict) -> None:
        """Upload the clips (the server's input folder cannot be inspected: always overwritten)."""
        for name in referenced_sample_clips(prompt):
            self.client.upload(sample_clip_path(name), overwrite=True)

    def _wait(self, prompt_id: str, ws, progress: ProgressPrinter, deadline: float | None) -> dict:
        if ws is not None:
            try:
                self.client.follow_websocket(ws, prompt_id, progress.event, deadline)
            except RunnerError:
                raise
            except Exception as e:  # noqa: BLE001  a dropped connection: fall back to polling
                progress.event("websocket_lost", {"reason": str(e)})
        return self.client.poll(prompt_id, deadline)

    def _follow(self, prompt: dict, progress: ProgressPrinter, deadline: float | None) -> tuple[str, dict]:
        ws = self.client.open_websocket() if self.use_websocket else None
        try:
            prompt_id = self.client.queue(prompt)
            try:
                return prompt_id, self._wait(prompt_id, ws, progress, deadline)
            except (KeyboardInterrupt, RunnerError):
                self.client.interrupt()  # Ctrl-C or --timeout: do not leave the server busy
                raise
        finally:
            if ws is not None:
                ws.close()

    def _fetch(self, outputs: dict, out_dir: Path) -> list[Path]:
        files = []
        for _node_id, item in output_entries(outputs):
            if item.get("type", "output") not in ("output", "temp"):
                continue
            data = self.client.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
            target = local_target(out_dir, item)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            files.append(target)
        return files

    def run(self, prompt: dict, progress: ProgressPrinter, out_dir: Path) -> RunResult:
        start = time.monotonic()
        prompt_id, entry = self._follow(prompt, progress, start + self.timeout if self.timeout else None)
        progress.close()
        status, outputs = entry.get("status") or {}, entry.get("outputs") or {}
        result = RunResult(True, prompt_id, prompt, outputs)
        if status.get("status_str") == "error" or progress.error:
            result.success, result.error = False, progress.error or error_from_status(status)
        else:
            result.files = self._fetch(outputs, out_dir)
        result.seconds = time.monotonic() - start
        return result
