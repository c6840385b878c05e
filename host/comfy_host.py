"""Real ComfyUI running in this process with the pack loaded: run prompts, workflows and single nodes.

Used by ``python -m video_enhance_kit run|doctor`` (through :class:`~video_enhance_kit.host.backend.InProcessBackend`),
tests/host/, benchmarks/ and assets/make_workflows.py. This module imports nothing from ComfyUI at
import time; ComfyUI is imported inside :meth:`ComfyHost.start` and the methods after it::

    host = ComfyHost.start(find_comfyui(), tiny_models=True)   # once per process
    result = host.run_workflow("example_workflows/nc_sdedit_sd15.json", tiny=True, max_steps=3)
    result.raise_for_error()                                   # HostRunError naming node and message
    images, = host.run_node("VEK_Something", images=torch.rand(3, 64, 64, 3), strength=0.5)
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..nodes._registry import place_clip
from . import boot
from . import object_info as info
from .errors import HostError
from .locate import PACK_DIR_NAME, PACK_ROOT, describe_missing_comfyui, find_comfyui
from .overrides import apply_input_values
from .prompt import cap_steps, to_api
from .results import NodeError, RunResult, execution_error, validation_error
from .standin import ServerStandIn
from .tiny import substitute_tiny_models
from .tiny_models import default_cache_dir, ensure_tiny_models, tiny_models

#: The node id a node executed by :meth:`ComfyHost.run_node` runs under.
RUN_NODE_ID = "run_node"


class NodeOutputs(tuple):
    """The outputs of :meth:`ComfyHost.run_node` (a tuple, one value per output) plus ``.ui``."""

    ui: dict


async def _await_pending(results, obj):
    import execution

    values = [await r if isinstance(r, asyncio.Task) else r for r in results]
    return execution.get_output_from_returns(values, obj)


class ComfyHost:
    """Real ComfyUI running in this process, with this pack loaded. One per process: use :meth:`start`.

    Attributes: ``comfyui`` (root), ``workdir`` (temp folder holding input/, output/, temp/, user/,
    models/, custom_nodes/), ``input_dir``, ``output_dir``, ``temp_dir``, ``models_dir``, ``tiny_models``
    (filename -> path, empty unless started with ``tiny_models=True``), ``pack_module_name`` (the name
    ComfyUI imported the pack under), ``pack_errors`` (import problems of the pack: empty when it
    loaded), ``builtin_import_failures`` (ComfyUI's own extras that failed, e.g. audio without torchaudio),
    ``node_progress`` (``fn(node_id, value, max)`` for :meth:`run_node`), ``last_node_messages``.
    """

    _instance: ComfyHost | None = None

    def __init__(self, comfyui: Path, workdir: Path):
        self.comfyui, self.workdir = Path(comfyui), Path(workdir)
        for name in ("input", "output", "temp", "user", "models", "custom_nodes"):
            setattr(self, f"{name}_dir", self.workdir / name)
        self.tiny_models: dict[str, Path] = {}
        self.pack_module_name: str | None = None
        self.pack_path: Path | None = None
        self.pack_errors: list[str] = []
        self.builtin_import_failures: list[str] = []
        self.startup_s = 0.0
        self.argv: list[str] = []  # the ComfyUI flags the host started with
        self._loop = asyncio.new_event_loop()
        self._server = ServerStandIn()
        self._executor = None
        self._object_info: dict | None = None
        self.node_progress: Callable[[str, int, int], None] | None = None
        self.last_node_messages: list = []

    # -- start -------------------------------------------------------------------------------

    @classmethod
    def current(cls) -> ComfyHost | None:
        """The started host of this process, if any."""
        return cls._instance

    @classmethod
    def start(cls, comfyui: str | os.PathLike | None = None, *, workdir: str | os.PathLike | None = None,
              tiny_models: bool = False, tiny_models_dir: str | os.PathLike | None = None, strict: bool = True,
              extra_model_paths: dict[str, list[str]] | None = None, device: str = "auto",
              comfy_args: list[str] | None = None) -> ComfyHost:
        """Start ComfyUI in this process (once; later calls return the same host).

        ``comfyui``: the ComfyUI root (default :func:`find_comfyui`). ``workdir``: where input/output/
        temp/models go (default a new temp folder). ``tiny_models``: build (cached) and register the
        tiny models. ``strict``: raise :class:`HostError` if the pack failed to import.
        ``extra_model_paths``: ``{folder_name: [paths]}`` added to ComfyUI's model folders (real models).
        ``device``: ``"cpu"``, ``"gpu"`` (ComfyUI picks the accelerator) or ``"auto"`` (gpu when torch sees
        CUDA, XPU or MPS, else cpu; on cpu the host passes ``--cpu``, without which ComfyUI cannot start
        on a CPU-only torch). ``comfy_args``: more ComfyUI flags (e.g. ``["--preview-method", "latent2rgb"]``).
        Only the first call's ``device`` and ``comfy_args`` count.
        """
        host = cls._instance or cls._boot_new(comfyui, workdir, device, comfy_args)
        if comfyui is not None and Path(comfyui).resolve() != host.comfyui.resolve():
            raise HostError(f"ComfyUI from {host.comfyui} is already running in this process; "
                            f"cannot start a second one from {comfyui}")
        if strict:
            host.raise_for_pack_errors()
        if tiny_models and not host.tiny_models:
            host.install_tiny_models(tiny_models_dir)
        if extra_model_paths:
            host._add_model_paths(extra_model_paths)
        return host

    @classmethod
    def _boot_new(cls, comfyui, workdir, device: str, comfy_args) -> ComfyHost:
        root = find_comfyui(comfyui)
        if root is None:
            raise HostError(describe_missing_comfyui(comfyui))
        host = cls(root, Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vek-comfy-")))
        if workdir is None and not os.environ.get("VEK_KEEP_WORKDIR"):
            atexit.register(host._remove_workdir)  # set VEK_KEEP_WORKDIR=1 to keep it for debugging
        t0 = time.perf_counter()
        try:
            host._boot(boot.comfy_argv(device, comfy_args))
        except HostError:
            raise
        except Exception as exc:  # noqa: BLE001  ComfyUI cannot start in this Python: one message, exit 3
            cls._instance = None
            raise HostError(boot.startup_failure(root, exc)) from exc
        host.startup_s = time.perf_counter() - t0
        return host

    def raise_for_pack_errors(self) -> None:
        """Raise :class:`HostError` with the import errors if the pack failed to load."""
        if self.pack_errors:
            raise HostError("video-enhance-kit failed to load in ComfyUI:\n" + "\n".join(self.pack_errors))

    def _remove_workdir(self) -> None:
        link = self.custom_nodes_dir / PACK_DIR_NAME
        if link.is_symlink():
            link.unlink()  # never descend into the pack
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _boot(self, argv: list[str]) -> None:
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        boot.prepare_sys_path(self.comfyui)
        self.argv = argv
        boot.parse_comfy_args(self.comfyui, argv)
        boot.set_folders(self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.models_dir)
        self.pack_path = boot.link_pack(self.comfyui, self.custom_nodes_dir)
        self.pack_module_name = str(self.pack_path).replace(".", "_x_")
        import comfy.utils
        import execution

        type(self)._instance = self  # ComfyUI's node registry is being filled: never initialise it twice
        self.builtin_import_failures, records = boot.init_nodes(self._loop)
        self.pack_errors = boot.pack_errors(records, self.pack_path, self.pack_module_name, self._loop)
        self.place_sample_clips()
        comfy.utils.set_progress_bar_global_hook(self._progress_hook)
        self._executor = execution.PromptExecutor(self._server, cache_type=execution.CacheType.CLASSIC)

    def place_sample_clips(self) -> None:
        """Put the bundled clips (assets/*.mp4) where LoadVideo finds them (the input folder)."""
        for clip in sorted((PACK_ROOT / "assets").glob("*.mp4")):
            place_clip(clip, self.input_dir)

    def install_tiny_models(self, cache_dir: str | os.PathLike | None = None, models: dict | None = None) -> dict[str, Path]:
        """Build (cached) every tiny model, or ``models``, and add its folder to ComfyUI's model folders; ``{filename: path}``."""
        import folder_paths

        root = Path(cache_dir) if cache_dir else default_cache_dir()
        models = tiny_models() if models is None else models
        self.tiny_models.update(ensure_tiny_models(models, root=root))
        for name in {m.folder for m in models.values()}:
            (root / name).mkdir(parents=True, exist_ok=True)
            folder_paths.add_model_folder_path(name, str(root / name))
        self._object_info = None
        return dict(self.tiny_models)

    def _add_model_paths(self, paths: dict[str, list[str]]) -> None:
        import folder_paths

        for name, dirs in paths.items():
            for d in dirs:
                folder_paths.add_model_folder_path(name, str(d))
        self._object_info = None

    def _progress_hook(self, value, total, preview_image, prompt_id=None, node_id=None):
        import comfy.model_management
        from comfy_execution.progress import get_progress_state
        from comfy_execution.utils import get_executing_context

        ctx = get_executing_context()
        if ctx is not None:
            prompt_id = ctx.prompt_id if prompt_id is None else prompt_id
            node_id = ctx.node_id if node_id is None else node_id
        comfy.model_management.throw_exception_if_processing_interrupted()
        node_id = self._server.last_node_id if node_id is None else node_id
        get_progress_state().update_progress(node_id, value, total, preview_image)
        self._server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id},
                               self._server.client_id)

    # -- node information ------------------------------------------------------------------

    def node_class(self, class_type: str):
        """The node class ComfyUI registered under ``class_type`` (KeyError naming it otherwise)."""
        return info.node_class(class_type)

    def node_info(self, class_type: str) -> dict:
        """/object_info entry of one node."""
        return info.node_info(class_type)

    def object_info(self, refresh: bool = False) -> dict:
        """What GET /object_info returns, for every registered node (JSON-round-tripped, cached)."""
        if self._object_info is None or refresh:
            self._object_info = info.object_info()
        return self._object_info

    def pack_node_ids(self) -> list[str]:
        """Node ids ComfyUI registered from this pack."""
        import nodes

        mod = f"custom_nodes.{self.pack_path.name}" if self.pack_path else None
        return [k for k, c in nodes.NODE_CLASS_MAPPINGS.items() if getattr(c, "RELATIVE_PYTHON_MODULE", None) == mod]

    def pack_module(self, submodule: str = ""):
        """The pack's module as ComfyUI imported it (e.g. ``"utils.flow"``).

        ComfyUI imports the pack under a name made from its path, so ``video_enhance_kit.X`` and
        ``host.pack_module("X")`` are two copies: build values whose class the nodes check with
        isinstance (e.g. a VideoFlow) from this one.
        """
        import importlib

        return importlib.import_module(self.pack_module_name + (f".{submodule}" if submodule else ""))

    # -- conversion and validation ---------------------------------------------------------

    def to_api(self, workflow: dict) -> dict:
        """API-format prompt from a UI-format workflow (comfy-cli's converter) or an API prompt (copied)."""
        return to_api(workflow, self.object_info())

    def validate(self, prompt: dict):
        """ComfyUI's own validation: (ok, error: NodeError | None, output node ids, node_errors)."""
        import execution

        ok, error, outputs, node_errors = self._loop.run_until_complete(
            execution.validate_prompt(str(uuid.uuid4()), prompt, None))
        return ok, None if ok else validation_error(error, node_errors, prompt), list(outputs), node_errors

    # -- execution ---------------------------------------------------------------------------

    def _prepared(self, prompt: dict, tiny: bool, max_steps: int | None) -> tuple[dict, list[str]]:
        prompt = self.to_api(prompt)
        changes: list[str] = []
        if tiny:
            prompt, changes = substitute_tiny_models(prompt)
        if max_steps is not None:
            prompt, capped = cap_steps(prompt, max_steps)
            changes += capped
        return prompt, changes

    def _execute(self, result: RunResult, outputs: list[str], on_progress, on_message, fresh: bool) -> None:
        server = self._server
        server.reset()
        server.on_progress, server.on_message = on_progress, on_message
        server.last_prompt_id = result.prompt_id
        if fresh:
            self._executor.reset()
        try:
            self._loop.run_until_complete(self._executor.execute_async(
                result.prompt, result.prompt_id, {"client_id": "vek-host"}, outputs))
        finally:
            server.on_progress = server.on_message = None
        result.messages, result.timings = list(server.messages), dict(server.timings)

    def _collect(self, result: RunResult) -> None:
        result.success = bool(self._executor.success)
        result.outputs = (getattr(self._executor, "history_result", None) or {}).get("outputs", {})
        for event, data in self._executor.status_messages:
            error = execution_error(event, data)
            if error is not None:
                result.error, result.success = error, False
        if not result.success and result.error is None:
            result.error = NodeError(None, None, "execution failed without an error message", kind="incomplete")

    def run_prompt(self, prompt: dict, *, tiny: bool = False, on_progress: Callable[[str, int, int], None] | None = None,
                   on_message: Callable[[str, Any], None] | None = None, fresh: bool = False,
                   max_steps: int | None = None) -> RunResult:
        """Validate and execute an API-format prompt; never raises for a node failure (see ``raise_for_error``).

        ``tiny``: substitute tiny models for the files the loaders name (:func:`substitute_tiny_models`).
        ``on_progress(node_id, value, max)``: called on every ProgressBar update. ``on_message(event,
        data)``: every message ComfyUI sends. ``fresh``: drop ComfyUI's output cache first (by default
        unchanged nodes, e.g. loaders, are reused across runs). ``max_steps``: cap every ``steps`` input.
        """
        prompt, changes = self._prepared(prompt, tiny, max_steps)
        self.place_sample_clips()
        result = RunResult(success=False, prompt_id=str(uuid.uuid4()), prompt=prompt, substitutions=changes)
        t0 = time.perf_counter()
        ok, result.error, outputs, result.node_errors = self.validate(prompt)
        if ok:
            before = self._snapshot_outputs()
            self._execute(result, outputs, on_progress, on_message, fresh)
            self._collect(result)
            result.files = self._new_outputs(before)
        result.seconds = time.perf_counter() - t0
        return result

    def run_workflow(self, workflow: str | os.PathLike | dict, *, overrides: dict[str, Any] | None = None,
                     **kwargs) -> RunResult:
        """Run a UI- or API-format workflow (a path or a dict). ``overrides``: ``{"NODE_ID.input": value}``.

        Other keyword arguments go to :meth:`run_prompt` (``tiny``, ``max_steps``, ``on_progress``, ``fresh``).
        """
        if not isinstance(workflow, dict):
            workflow = json.loads(Path(workflow).read_text())
        return self.run_prompt(apply_input_values(self.to_api(workflow), overrides), **kwargs)

    def run_node(self, class_type: str, **inputs) -> NodeOutputs:
        """Execute one node class directly with Python values (as ComfyUI would inside a prompt).

        Returns a tuple with one value per output (``.ui`` holds the UI dict). Exceptions of the node
        propagate unchanged (e.g. the pack's InputError), which is what unit-style host tests want.
        Progress bars of the node call ``host.node_progress(node_id, value, max)`` if you set it
        (``node_id`` is ``"run_node"``); ``host.last_node_messages`` holds what the node sent.
        """
        from comfy_api.internal import _ComfyNodeInternal

        cls = self.node_class(class_type)
        obj = cls if issubclass(cls, _ComfyNodeInternal) else cls()
        output, ui = self._node_output(obj, {k: [v] for k, v in inputs.items()})
        out = NodeOutputs(o[0] if len(o) == 1 else o for o in output)
        out.ui = ui
        self.last_node_messages = list(self._server.messages)
        return out

    def _node_output(self, obj, data: dict):
        import execution
        import torch
        from comfy_execution.graph import DynamicPrompt
        from comfy_execution.progress import reset_progress_state

        import nodes

        prompt_id = str(uuid.uuid4())
        nodes.interrupt_processing(False)  # a new execution starts uninterrupted, as every prompt does
        reset_progress_state(prompt_id, DynamicPrompt({}))  # no handler of an earlier prompt sees this node
        self._server.reset()
        self._server.on_progress, self._server.last_node_id = self.node_progress, RUN_NODE_ID
        try:
            with torch.inference_mode():
                output, ui, _sub, pending = self._loop.run_until_complete(
                    execution.get_output_data(prompt_id, RUN_NODE_ID, obj, data, hidden_inputs={}))
            if pending:
                output, ui, _sub = self._loop.run_until_complete(_await_pending(output, obj))
        finally:
            self._server.on_progress = self._server.last_node_id = None
        return output, ui

    # -- output files ------------------------------------------------------------------------

    def _snapshot_outputs(self) -> dict[Path, float]:
        found = {}
        for folder in (self.output_dir, self.temp_dir):
            found.update({p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()})
        return found

    def _new_outputs(self, before: dict[Path, float]) -> list[Path]:
        now = self._snapshot_outputs()
        return sorted(p for p, m in now.items() if before.get(p) != m)
