"""In-process ComfyUI host: start real ComfyUI with this pack loaded, run workflows, collect results.

Used by ``python -m video_enhance_kit run/doctor`` (cli.py), tests/host/ and assets/make_workflows.py.
This module imports nothing from ComfyUI at import time (it is imported before ComfyUI is on
sys.path); ComfyUI is imported inside :meth:`ComfyHost.start` and the methods after it.

Typical use::

    from video_enhance_kit.nodes._host import ComfyHost, find_comfyui

    host = ComfyHost.start(find_comfyui(), tiny_models=True)   # once per process
    result = host.run_workflow("example_workflows/nc_sdedit.json", tiny=True, on_progress=print)
    result.raise_for_error()                                   # HostRunError naming node and message
    print(result.outputs, result.files, result.timings)
    images, = host.run_node("VEK_Something", images=torch.rand(3, 64, 64, 3), strength=0.5)

API (all documented below): :func:`find_comfyui`, :class:`ComfyHost` (``start``, ``object_info``,
``node_class``, ``pack_module``, ``to_api``, ``validate``, ``run_prompt``, ``run_workflow``,
``run_node``, ``input_dir``, ``output_dir``, ``pack_errors``), :class:`RunResult`, :class:`NodeError`,
:func:`api_to_ui`, tiny models: :func:`substitute_tiny_models` and :func:`register_tiny_substitution`.

Tiny runs (``tiny=True``; the CLI's ``--tiny``; ``doctor``; tests/host) rewrite the prompt before it
runs (:func:`substitute_tiny_models`): CheckpointLoaderSimple -> the tiny SD1.5 checkpoint, UNETLoader
-> tiny Wan 2.1, VAELoader -> tiny Wan VAE (names containing "wan") or tiny TAESD, CLIPLoader -> tiny
CLIP-L (type "wan" becomes "sd3", whose output ComfyUI pads to Wan's 4096 channels), LoadVideo of
``vek_sample.mp4`` -> ``vek_sample_tiny.mp4`` (64 px, 9 frames). ``max_steps=N`` additionally caps
every ``steps`` input (:func:`cap_steps`). Linked inputs are never touched.

To make your own loader node run with a tiny model, register both halves from your feature file
(``nodes/<feature>.py``, at import) or from a test; the registries are shared by every copy of the
pack in the process, so ComfyUI's copy and ``video_enhance_kit`` see the same entries::

    from . import _tiny_models, _host          # inside the pack (relative imports)
    _tiny_models.register_tiny_model(_tiny_models.TinyModel("venhancer", "vek-tiny-venhancer.safetensors", build_fn))
    _host.register_tiny_substitution("VEK_VEnhancerLoader", lambda inputs: {**inputs, "ckpt_name": "vek-tiny-venhancer.safetensors"})

``build_fn()`` returns a state dict (built deterministically, seeded). The host builds every registered
tiny model into ``<cache>/<folder>/`` when it starts with ``tiny_models=True`` and adds that folder to
ComfyUI's model folder ``<folder>`` (a new folder name is created), so your loader's file list shows it.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: The pack root (the folder ComfyUI loads; pip maps it to ``video_enhance_kit``).
PACK_ROOT = Path(os.path.abspath(__file__)).parent.parent
#: Folder name of the pack inside ``custom_nodes`` when the host links it there.
PACK_DIR_NAME = "video-enhance-kit"
#: The sample clip the example workflows load with LoadVideo (made by assets/make_sample_clip.py).
SAMPLE_CLIP = PACK_ROOT / "assets" / "vek_sample.mp4"
#: Its small variant (64 px, 9 frames): tiny runs load it instead of SAMPLE_CLIP.
SAMPLE_CLIP_TINY = PACK_ROOT / "assets" / "vek_sample_tiny.mp4"
#: Prefix of every node id of the pack.
NODE_PREFIX = "VEK_"
#: The node id a node executed by :meth:`ComfyHost.run_node` runs under.
RUN_NODE_ID = "run_node"

log = logging.getLogger("video_enhance_kit.host")


class HostError(RuntimeError):
    """ComfyUI could not be found or started, or the pack failed to load."""


class HostRunError(RuntimeError):
    """A prompt failed validation or execution (the message names the node and the reason)."""


# ----------------------------------------------------------------------------------------------
# Finding ComfyUI
# ----------------------------------------------------------------------------------------------


def is_comfyui_root(path: str | os.PathLike | None) -> bool:
    """True if ``path`` looks like a ComfyUI checkout (has ``main.py`` and ``comfy/``)."""
    if not path:
        return False
    p = Path(path)
    return (p / "main.py").is_file() and (p / "comfy").is_dir()


def _pack_roots() -> list[Path]:
    """The pack root as seen through its path (maybe a symlink in custom_nodes) and resolved."""
    roots = [PACK_ROOT, PACK_ROOT.resolve()]
    return list(dict.fromkeys(roots))


def pack_in_custom_nodes(comfyui: Path) -> bool:
    """True if this pack already sits in ``comfyui/custom_nodes`` (then ComfyUI loads it itself)."""
    custom = (Path(comfyui) / "custom_nodes")
    if not custom.is_dir():
        return False
    for entry in custom.iterdir():
        try:
            if entry.is_dir() and entry.resolve() == PACK_ROOT.resolve():
                return True
        except OSError:
            continue
    return False


def find_comfyui(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate ComfyUI: ``explicit``, else ``$COMFYUI_PATH``, else the ComfyUI whose custom_nodes holds this pack.

    An explicit path or a set COMFYUI_PATH that is not a ComfyUI folder gives ``None`` (no silent
    fallback to another installation).
    """
    if explicit:
        return Path(explicit).resolve() if is_comfyui_root(explicit) else None
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve() if is_comfyui_root(env) else None
    for root in _pack_roots():
        candidate = root.parent.parent
        if root.parent.name == "custom_nodes" and is_comfyui_root(candidate):
            return candidate
    return None


def describe_missing_comfyui(explicit: str | os.PathLike | None = None) -> str:
    """One sentence saying why :func:`find_comfyui` found nothing and how to fix it."""
    if explicit:
        return f"{explicit} is not a ComfyUI folder (no main.py and comfy/ there); pass the ComfyUI root"
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return f"COMFYUI_PATH={env} is not a ComfyUI folder (no main.py and comfy/ there)"
    return ("ComfyUI not found; set COMFYUI_PATH=/path/to/ComfyUI or put this pack in "
            "ComfyUI/custom_nodes")


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class NodeError:
    """Where and why a prompt failed."""

    node_id: str | None
    node_type: str | None
    message: str
    exception_type: str = ""
    traceback: str = ""
    details: Any = None

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.node_type})" if self.node_id is not None else "prompt"
        kind = f"{self.exception_type}: " if self.exception_type else ""
        return f"{where}: {kind}{self.message}"


@dataclass
class RunResult:
    """The outcome of :meth:`ComfyHost.run_prompt`.

    ``outputs``: the UI outputs per node id (what /history shows: images, gifs, text, ...);
    ``error``: the first failure (validation or execution), else None; ``node_errors``: ComfyUI's
    validation errors per node; ``timings``: seconds per executed node id; ``files``: files written
    to the output and temp folders (previews go to temp); ``messages``: every (event, data) ComfyUI sent; ``prompt``: the API prompt run.
    """

    success: bool
    prompt_id: str
    prompt: dict
    outputs: dict = field(default_factory=dict)
    error: NodeError | None = None
    node_errors: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    total_s: float = 0.0
    files: list[Path] = field(default_factory=list)
    messages: list = field(default_factory=list)
    substitutions: list = field(default_factory=list)

    def raise_for_error(self) -> "RunResult":
        """Raise :class:`HostRunError` (node id, type and message) unless the run succeeded."""
        if not self.success:
            detail = ""
            if self.node_errors:
                detail = "\n" + json.dumps(self.node_errors, indent=1, default=str)[:4000]
            tb = f"\n{self.error.traceback}" if self.error and self.error.traceback else ""
            raise HostRunError(f"{self.error}{detail}{tb}")
        return self


class NodeOutputs(tuple):
    """The outputs of :meth:`ComfyHost.run_node` (a tuple, one value per output) plus ``.ui``."""

    ui: dict


# ----------------------------------------------------------------------------------------------
# Tiny-model substitution
# ----------------------------------------------------------------------------------------------

def _shared_registry(name: str) -> dict:
    from ._tiny_models import shared_registry

    return shared_registry(name)


#: class_type -> fn(inputs) -> new inputs (or None: leave the node alone). Applied to literal values.
#: Shared by every copy of the pack in the process (see ``_tiny_models.shared_registry``).
TINY_SUBSTITUTIONS: dict[str, Callable[[dict], dict | None]] = _shared_registry("tiny_substitutions")


def register_tiny_substitution(class_type: str, fn: Callable[[dict], dict | None]) -> None:
    """Make ``class_type`` load a tiny model in tiny runs: ``fn(inputs)`` returns the new inputs."""
    TINY_SUBSTITUTIONS[class_type] = fn


def _tiny_defaults() -> None:
    from . import _tiny_models as tm

    def register_tiny_substitution(class_type, fn):  # defaults never replace a registration made earlier
        TINY_SUBSTITUTIONS.setdefault(class_type, fn)

    register_tiny_substitution("CheckpointLoaderSimple", lambda i: {**i, "ckpt_name": tm.SD15_CHECKPOINT})
    register_tiny_substitution("UNETLoader", lambda i: {**i, "unet_name": tm.WAN21_MODEL, "weight_dtype": "default"})

    def vae(i: dict) -> dict:
        name = str(i.get("vae_name", "")).lower()
        return {**i, "vae_name": tm.WAN21_VAE if "wan" in name else tm.TAESD_VAE}

    def clip(i: dict) -> dict:
        # Wan's UMT5-XXL is 5.7 B params; ComfyUI pads an SD3-type CLIP-L output to Wan's 4096 channels.
        wan = str(i.get("type", "")).lower() == "wan"
        return {**i, "clip_name": tm.CLIP_L, "type": "sd3" if wan else "stable_diffusion"}

    register_tiny_substitution("VAELoader", vae)
    register_tiny_substitution("CLIPLoader", clip)

    def video(i: dict) -> dict:
        # the 256 px, 25-frame sample clip -> its 64 px, 9-frame variant (assets/make_sample_clip.py --tiny)
        return {**i, "file": SAMPLE_CLIP_TINY.name} if i.get("file") == SAMPLE_CLIP.name else i

    register_tiny_substitution("LoadVideo", video)
    register_tiny_substitution("VEK_VEnhancerModelLoader", lambda i: {**i, "ckpt_name": tm.VENHANCER})
    # tiny runs keep the clip's size: the official >= 1.5x 720p output would take minutes on a CPU
    register_tiny_substitution(
        "VEK_VEnhancerUpscale", lambda i: {**i, "resolution_rule": "exact", "up_scale": 1.0, "padding": "minimal"}
    )


_tiny_defaults()


def substitute_tiny_models(prompt: dict) -> tuple[dict, list[str]]:
    """A copy of the API ``prompt`` whose loaders name tiny models; also a list of what changed."""
    out = copy.deepcopy(prompt)
    changes = []
    for node_id, node in out.items():
        fn = TINY_SUBSTITUTIONS.get(node.get("class_type"))
        if fn is None:
            continue
        literal = {k: v for k, v in node.get("inputs", {}).items() if not _is_link(v)}
        new = fn(dict(literal))
        if new is None:
            continue
        for k, v in new.items():
            if _is_link(node["inputs"].get(k)):
                continue  # a linked input stays linked
            if literal.get(k) != v:
                changes.append(f"{node_id} {node['class_type']}.{k}: {literal.get(k)!r} -> {v!r}")
                node["inputs"][k] = v
    return out, changes


def cap_steps(prompt: dict, max_steps: int) -> tuple[dict, list[str]]:
    """A copy of ``prompt`` where every literal ``steps`` or ``*_steps`` input is at most ``max_steps``.

    ``start_at_step`` / ``end_at_step`` of the same node scale with its ``steps`` (KSamplerAdvanced and
    the like), so a two-stage graph keeps its proportions. For fast smoke runs of user-sized workflows.
    """
    out = copy.deepcopy(prompt)
    changes = []
    for node_id, node in out.items():
        inputs = node.get("inputs", {})
        ctype = node.get("class_type")
        for name in list(inputs):
            value = inputs[name]
            if not (name == "steps" or name.endswith("_steps")) or isinstance(value, bool) or not isinstance(value, int):
                continue
            if value <= max_steps:
                continue
            inputs[name] = max_steps
            changes.append(f"{node_id} {ctype}.{name}: {value} -> {max_steps}")
            if name != "steps":
                continue
            factor = max_steps / value
            for key in ("start_at_step", "end_at_step"):
                edge = inputs.get(key)
                if isinstance(edge, int) and not isinstance(edge, bool) and edge <= value:
                    inputs[key] = int(round(edge * factor))
                    changes.append(f"{node_id} {ctype}.{key}: {edge} -> {inputs[key]}")
    return out, changes


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


# ----------------------------------------------------------------------------------------------
# The server stand-in
# ----------------------------------------------------------------------------------------------


class _ServerStandIn:
    """What PromptExecutor needs from ComfyUI's PromptServer: collects messages, times nodes."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list = []
        self.on_progress: Callable | None = None
        self.on_message: Callable | None = None
        self._node_started: dict = {}
        self.timings: dict = {}
        self._current: str | None = None

    def send_sync(self, event, data, sid=None):
        if isinstance(event, str):
            self.messages.append((event, data))
        now = time.perf_counter()
        if event == "executing":
            self._close_current(now)
            node = data.get("node") if isinstance(data, dict) else None
            self._current = node
            if node is not None:
                self._node_started[node] = now
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            self._close_current(now)
        if self.on_message is not None and isinstance(event, str):
            self.on_message(event, data)
        if event == "progress" and self.on_progress is not None:
            self.on_progress(data.get("node"), data.get("value"), data.get("max"))

    def _close_current(self, now):
        if self._current is not None and self._current in self._node_started:
            self.timings[self._current] = now - self._node_started[self._current]
        self._current = None

    def queue_updated(self):
        pass

    def reset(self):
        self.messages = []
        self.timings = {}
        self._node_started = {}
        self._current = None


# ----------------------------------------------------------------------------------------------
# The host
# ----------------------------------------------------------------------------------------------


def _define_torchvision_ops() -> None:
    """Let torchvision import on a CPU torch whose torchvision build lacks its C++ ops (nms, qnms)."""
    if "torchvision" in sys.modules:
        return
    import torch

    missing = []
    for op in ("nms", "qnms"):
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
        except RuntimeError:
            missing.append(op)
    if not missing:
        return
    lib = torch.library.Library("torchvision", "DEF")
    schemas = {
        "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms": "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
    }
    for op in missing:
        lib.define(schemas[op])
    _define_torchvision_ops.lib = lib  # keep the library alive


def _comfy_argv(device: str, extra: list[str] | None) -> list[str]:
    """ComfyUI flags for ``device`` (see :meth:`ComfyHost.start`)."""
    if device not in ("auto", "cpu", "gpu"):
        raise HostError(f"device={device!r}: use 'auto', 'cpu' or 'gpu'")
    if device == "auto":
        import torch

        accelerated = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or \
            (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
        device = "gpu" if accelerated else "cpu"
    argv = ["--cpu"] if device == "cpu" else []
    return argv + list(extra or [])


class ComfyHost:
    """Real ComfyUI running in this process, with this pack loaded. One per process: use :meth:`start`.

    Attributes: ``comfyui`` (root), ``workdir`` (temp folder holding input/, output/, temp/, user/,
    models/, custom_nodes/), ``input_dir``, ``output_dir``, ``models_dir``, ``tiny_models`` (filename ->
    path, empty unless started with ``tiny_models=True``), ``pack_module_name`` (the name ComfyUI
    imported the pack under), ``pack_errors`` (import problems of the pack: empty when it loaded),
    ``builtin_import_failures`` (ComfyUI's own extras that failed, e.g. audio nodes without torchaudio).
    """

    _instance: "ComfyHost | None" = None

    def __init__(self, comfyui: Path, workdir: Path):
        self.comfyui = Path(comfyui)
        self.workdir = Path(workdir)
        self.input_dir = self.workdir / "input"
        self.output_dir = self.workdir / "output"
        self.temp_dir = self.workdir / "temp"
        self.user_dir = self.workdir / "user"
        self.models_dir = self.workdir / "models"
        self.custom_nodes_dir = self.workdir / "custom_nodes"
        self.tiny_models: dict[str, Path] = {}
        self.pack_module_name: str | None = None
        self.pack_path: Path | None = None
        self.pack_errors: list[str] = []
        self.builtin_import_failures: list[str] = []
        self.startup_s = 0.0
        self.argv: list[str] = []  # the ComfyUI flags the host started with
        self._loop = asyncio.new_event_loop()
        self._server = _ServerStandIn()
        self._executor = None
        self._object_info: dict | None = None
        #: Progress callback for :meth:`run_node`: ``fn(node_id, value, max)`` or None.
        self.node_progress: Callable[[str, int, int], None] | None = None
        self.last_node_messages: list = []

    # -- start -------------------------------------------------------------------------------

    @classmethod
    def current(cls) -> "ComfyHost | None":
        """The started host of this process, if any."""
        return cls._instance

    @classmethod
    def start(
        cls,
        comfyui: str | os.PathLike | None = None,
        *,
        workdir: str | os.PathLike | None = None,
        tiny_models: bool = False,
        tiny_models_dir: str | os.PathLike | None = None,
        strict: bool = True,
        extra_model_paths: dict[str, list[str]] | None = None,
        device: str = "auto",
        comfy_args: list[str] | None = None,
    ) -> "ComfyHost":
        """Start ComfyUI in this process (once; later calls return the same host).

        ``comfyui``: the ComfyUI root (default :func:`find_comfyui`). ``workdir``: where input/output/
        temp/models go (default a new temp folder). ``tiny_models``: build (cached) and register the
        tiny models. ``strict``: raise :class:`HostError` if the pack failed to import.
        ``extra_model_paths``: ``{folder_name: [paths]}`` added to ComfyUI's model folders (real models).
        ``device``: ``"cpu"``, ``"gpu"`` (ComfyUI picks the accelerator) or ``"auto"`` (gpu when torch sees
        CUDA, XPU or MPS, else cpu; on cpu the host passes ``--cpu``, without which ComfyUI cannot start
        on a CPU-only torch).
        ``comfy_args``: more ComfyUI command-line flags (e.g. ``["--preview-method", "latent2rgb"]``).
        Only the first call's ``device`` and ``comfy_args`` count.
        """
        if cls._instance is not None:
            host = cls._instance
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
        root = find_comfyui(comfyui)
        if root is None:
            raise HostError(describe_missing_comfyui(comfyui))
        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vek-comfy-"))
        host = cls(root, work)
        if workdir is None and not os.environ.get("VEK_KEEP_WORKDIR"):
            atexit.register(host._remove_workdir)  # set VEK_KEEP_WORKDIR=1 to keep it for debugging
        t0 = time.perf_counter()
        host._boot(_comfy_argv(device, comfy_args))
        if strict:
            host.raise_for_pack_errors()
        if tiny_models:
            host.install_tiny_models(tiny_models_dir)
        if extra_model_paths:
            host._add_model_paths(extra_model_paths)
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

    def _check_module_shadowing(self) -> None:
        for name in ("nodes", "utils", "server", "execution", "folder_paths", "comfy"):
            mod = sys.modules.get(name)
            if mod is None:
                continue
            origin = getattr(mod, "__file__", None) or str(getattr(mod, "__path__", [""])[0] if hasattr(mod, "__path__") else "")
            if origin and not Path(origin).resolve().is_relative_to(self.comfyui.resolve()):
                raise HostError(f"a module named {name!r} from {origin} is already imported and would shadow "
                                f"ComfyUI's; start the host before importing it (never put the pack root on sys.path)")

    def _boot(self, argv: list[str]) -> None:
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._check_module_shadowing()
        root = str(self.comfyui)
        if root not in sys.path:
            sys.path.insert(0, root)
        _define_torchvision_ops()

        saved_argv = sys.argv
        self.argv = argv
        sys.argv = [os.path.join(root, "main.py"), *argv]
        try:
            import comfy.options

            comfy.options.enable_args_parsing()
            import comfy.cli_args  # noqa: F401  (parses sys.argv now)
        finally:
            sys.argv = saved_argv

        import folder_paths
        import utils.extra_config  # noqa: F401  ComfyUI's `utils` package, before nodes.py puts comfy/ first on sys.path

        folder_paths.set_output_directory(str(self.output_dir))
        folder_paths.set_input_directory(str(self.input_dir))
        folder_paths.set_temp_directory(str(self.temp_dir))
        folder_paths.set_user_directory(str(self.user_dir))
        for name in list(folder_paths.folder_names_and_paths):
            if name in ("custom_nodes", "configs"):
                continue
            path = self.models_dir / name
            path.mkdir(exist_ok=True)
            folder_paths.add_model_folder_path(name, str(path), is_default=True)

        # The pack: ComfyUI's own custom_nodes if it sits there, else a temp folder with a symlink.
        if pack_in_custom_nodes(self.comfyui):
            custom = self.comfyui / "custom_nodes"
            self.pack_path = next(e for e in custom.iterdir() if e.is_dir() and e.resolve() == PACK_ROOT.resolve())
        else:
            self.custom_nodes_dir.mkdir(exist_ok=True)
            self.pack_path = self.custom_nodes_dir / PACK_DIR_NAME
            if not self.pack_path.exists():
                os.symlink(PACK_ROOT.resolve(), self.pack_path, target_is_directory=True)
            folder_paths.folder_names_and_paths["custom_nodes"] = ([str(self.custom_nodes_dir)], set())
        self.pack_module_name = str(self.pack_path).replace(".", "_x_")

        import comfy.utils
        import execution
        import nodes

        records: list[logging.LogRecord] = []

        class _Collect(logging.Handler):
            def emit(self, record):
                records.append(record)

        type(self)._instance = self  # ComfyUI's node registry is being filled: never initialise it twice
        handler = _Collect(level=logging.WARNING)
        root_logger = logging.getLogger()
        root_logger.addHandler(handler)
        try:
            failed = self._loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        finally:
            root_logger.removeHandler(handler)
        self.builtin_import_failures = list(failed or [])

        pack_str = str(self.pack_path)
        for rec in records:
            try:
                msg = rec.getMessage()
            except Exception:  # noqa: BLE001
                msg = str(rec.msg)
            if pack_str in msg or PACK_DIR_NAME in msg:
                self.pack_errors.append(msg)
        if self.pack_module_name not in sys.modules:
            self.pack_errors.append(f"ComfyUI did not import the pack from {pack_str}")
        elif self.pack_errors:
            # ComfyUI logs only str(e) when comfy_entrypoint fails: find the traceback for the report
            try:
                extension = self._loop.run_until_complete(self.pack_module().comfy_entrypoint())
                for cls in self._loop.run_until_complete(extension.get_node_list()):
                    cls.GET_SCHEMA()
            except Exception:  # noqa: BLE001
                self.pack_errors.append(traceback.format_exc())

        self._copy_sample_clips()

        comfy.utils.set_progress_bar_global_hook(self._progress_hook)
        self._executor = execution.PromptExecutor(self._server, cache_type=execution.CacheType.CLASSIC)

    def _copy_sample_clips(self) -> None:
        """Put the bundled clips (assets/*.mp4) where LoadVideo finds them (the input folder)."""
        for clip in sorted((PACK_ROOT / "assets").glob("*.mp4")):
            target = self.input_dir / clip.name
            if not target.is_file() or target.stat().st_mtime < clip.stat().st_mtime:
                shutil.copy2(clip, target)

    def install_tiny_models(self, cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
        """Build (cached) every registered tiny model and add its folder to ComfyUI's model folders.

        Called by :meth:`start` with ``tiny_models=True``; call it again after registering a tiny model
        later (e.g. in a test). Returns ``{filename: path}``.
        """
        import folder_paths

        from . import _tiny_models as tm

        root = Path(cache_dir) if cache_dir else tm.default_cache_dir()
        self.tiny_models.update(tm.ensure_tiny_models(root=root))
        for name in {m.folder for m in tm.TINY_MODELS.values()}:
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
        if prompt_id is None and ctx is not None:
            prompt_id = ctx.prompt_id
        if node_id is None and ctx is not None:
            node_id = ctx.node_id
        comfy.model_management.throw_exception_if_processing_interrupted()
        if node_id is None:
            node_id = self._server.last_node_id
        get_progress_state().update_progress(node_id, value, total, preview_image)
        self._server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id},
                               self._server.client_id)

    # -- node information ------------------------------------------------------------------

    def node_class(self, class_type: str):
        """The node class ComfyUI registered under ``class_type`` (KeyError naming it otherwise)."""
        import nodes

        try:
            return nodes.NODE_CLASS_MAPPINGS[class_type]
        except KeyError:
            raise KeyError(f"ComfyUI has no node {class_type!r}") from None

    def node_info(self, class_type: str) -> dict:
        """/object_info entry of one node (V3 nodes give their V1-compatible info, as the server does)."""
        import nodes
        from comfy_api.internal import _ComfyNodeInternal

        cls = self.node_class(class_type)
        if issubclass(cls, _ComfyNodeInternal):
            return cls.GET_NODE_INFO_V1()
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

    def object_info(self, refresh: bool = False) -> dict:
        """What GET /object_info returns, for every registered node (JSON-round-tripped, cached)."""
        if self._object_info is None or refresh:
            import folder_paths
            import nodes

            out = {}
            with folder_paths.cache_helper:
                for name in list(nodes.NODE_CLASS_MAPPINGS):
                    try:
                        out[name] = self.node_info(name)
                    except Exception:  # noqa: BLE001 (the server logs and skips such nodes too)
                        log.error("object_info failed for %s:\n%s", name, traceback.format_exc())
            self._object_info = json.loads(json.dumps(out, default=str))
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

        name = self.pack_module_name + (f".{submodule}" if submodule else "")
        return importlib.import_module(name)

    # -- conversion and validation ---------------------------------------------------------

    def to_api(self, workflow: dict) -> dict:
        """API-format prompt from a UI-format workflow (comfy-cli's converter) or an API prompt (copied)."""
        from comfy_cli.workflow_to_api import convert_ui_to_api, is_api_format

        if is_api_format(workflow):
            return copy.deepcopy({k: v for k, v in workflow.items() if isinstance(v, dict) and "class_type" in v})
        return convert_ui_to_api(workflow, self.object_info())

    def validate(self, prompt: dict) -> tuple[bool, NodeError | None, list[str], dict]:
        """ComfyUI's own validation: (ok, error, output node ids, node_errors)."""
        import execution

        ok, error, outputs, node_errors = self._loop.run_until_complete(
            execution.validate_prompt(str(uuid.uuid4()), prompt, None))
        err = None
        if not ok:
            err = _validation_error(error, node_errors, prompt)
        return ok, err, list(outputs), node_errors

    # -- execution ---------------------------------------------------------------------------

    def run_prompt(
        self,
        prompt: dict,
        *,
        tiny: bool = False,
        on_progress: Callable[[str, int, int], None] | None = None,
        on_message: Callable[[str, Any], None] | None = None,
        fresh: bool = False,
        max_steps: int | None = None,
    ) -> RunResult:
        """Validate and execute an API-format prompt; never raises for a node failure (see ``raise_for_error``).

        ``tiny``: substitute tiny models for the files the loaders name (:func:`substitute_tiny_models`).
        ``on_progress(node_id, value, max)``: called on every ProgressBar update. ``fresh``: drop
        ComfyUI's output cache first (by default unchanged nodes, e.g. loaders, are reused across runs,
        as in a long-running ComfyUI). ``max_steps``: cap every ``steps`` input (:func:`cap_steps`).
        """
        prompt = self.to_api(prompt)
        changes: list[str] = []
        if tiny:
            prompt, changes = substitute_tiny_models(prompt)
        if max_steps is not None:
            prompt, capped = cap_steps(prompt, max_steps)
            changes += capped
        self._copy_sample_clips()
        prompt_id = str(uuid.uuid4())
        result = RunResult(success=False, prompt_id=prompt_id, prompt=prompt, substitutions=changes)
        t0 = time.perf_counter()
        ok, err, outputs, node_errors = self.validate(prompt)
        result.node_errors = node_errors
        if not ok:
            result.error = err
            result.total_s = time.perf_counter() - t0
            return result

        before = self._snapshot_outputs()
        server = self._server
        server.reset()
        server.on_progress = on_progress
        server.on_message = on_message
        server.last_prompt_id = prompt_id
        if fresh:
            self._executor.reset()
        try:
            self._loop.run_until_complete(
                self._executor.execute_async(prompt, prompt_id, {"client_id": "vek-host"}, outputs))
        finally:
            server.on_progress = None
            server.on_message = None
        result.total_s = time.perf_counter() - t0
        result.messages = list(server.messages)
        result.timings = dict(server.timings)
        result.success = bool(self._executor.success)
        history = getattr(self._executor, "history_result", None) or {}
        result.outputs = history.get("outputs", {})
        for event, data in self._executor.status_messages:
            if event == "execution_error":
                result.error = NodeError(str(data.get("node_id")), data.get("node_type"),
                                         str(data.get("exception_message", "")).strip(),
                                         data.get("exception_type", ""), "".join(data.get("traceback") or []))
                result.success = False
            elif event == "execution_interrupted":
                result.error = NodeError(str(data.get("node_id")), data.get("node_type"), "interrupted",
                                         "InterruptProcessingException")
                result.success = False
        if not result.success and result.error is None:
            result.error = NodeError(None, None, "execution failed without an error message")
        result.files = self._new_outputs(before)
        return result

    def run_workflow(self, workflow: str | os.PathLike | dict, *, overrides: dict[str, Any] | None = None,
                     **kwargs) -> RunResult:
        """Run a UI- or API-format workflow (a path or a dict). ``overrides``: ``{"NODE_ID.input": value}``.

        Other keyword arguments go to :meth:`run_prompt` (``tiny``, ``max_steps``, ``on_progress``, ``fresh``).
        """
        if not isinstance(workflow, dict):
            workflow = json.loads(Path(workflow).read_text())
        prompt = self.to_api(workflow)
        for key, value in (overrides or {}).items():
            node_id, _, name = key.partition(".")
            if node_id not in prompt or not name:
                raise HostRunError(f"override {key!r}: no node {node_id!r} in the workflow (ids: {sorted(prompt)})")
            prompt[node_id]["inputs"][name] = value
        return self.run_prompt(prompt, **kwargs)

    def run_node(self, class_type: str, **inputs) -> NodeOutputs:
        """Execute one node class directly with Python values (as ComfyUI would inside a prompt).

        Returns a tuple with one value per output (``.ui`` holds the UI dict). Exceptions of the node
        propagate unchanged (e.g. the pack's InputError), which is what unit-style host tests want.
        Progress bars of the node call ``host.node_progress(node_id, value, max)`` if you set it
        (``node_id`` is ``"run_node"``); ``host.last_node_messages`` holds what the node sent.
        """
        import torch
        import execution
        from comfy_api.internal import _ComfyNodeInternal

        from comfy_execution.graph import DynamicPrompt
        from comfy_execution.progress import reset_progress_state

        cls = self.node_class(class_type)
        obj = cls if issubclass(cls, _ComfyNodeInternal) else cls()
        data = {k: [v] for k, v in inputs.items()}
        prompt_id = str(uuid.uuid4())
        import nodes

        nodes.interrupt_processing(False)  # a new execution starts uninterrupted, as every prompt does
        reset_progress_state(prompt_id, DynamicPrompt({}))  # no handler of an earlier prompt sees this node
        self._server.reset()
        self._server.on_progress = self.node_progress
        self._server.last_node_id = RUN_NODE_ID
        try:
            with torch.inference_mode():
                output, ui, _sub, pending = self._loop.run_until_complete(
                    execution.get_output_data(prompt_id, RUN_NODE_ID, obj, data, hidden_inputs={}))
            if pending:
                output, ui, _sub = self._loop.run_until_complete(_await_pending(output, obj))
        finally:
            self._server.on_progress = None
            self._server.last_node_id = None
        out = NodeOutputs(o[0] if len(o) == 1 else o for o in output)
        out.ui = ui
        self.last_node_messages = list(self._server.messages)
        return out

    # -- output files ------------------------------------------------------------------------

    def _snapshot_outputs(self) -> dict[Path, float]:
        found = {}
        for folder in (self.output_dir, self.temp_dir):
            found.update({p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()})
        return found

    def _new_outputs(self, before: dict[Path, float]) -> list[Path]:
        now = self._snapshot_outputs()
        return sorted(p for p, m in now.items() if before.get(p) != m)


async def _await_pending(results, obj):
    import execution

    values = []
    for r in results:
        values.append(await r if isinstance(r, asyncio.Task) else r)
    return execution.get_output_from_returns(values, obj)


def _validation_error(error: dict | None, node_errors: dict, prompt: dict) -> NodeError:
    error = error or {}
    if node_errors:
        node_id, info = next(iter(node_errors.items()))
        errs = info.get("errors") or []
        msg = "; ".join(f"{e.get('message', '')}: {e.get('details', '')}".strip(": ") for e in errs) or error.get("message", "")
        return NodeError(str(node_id), info.get("class_type") or prompt.get(node_id, {}).get("class_type"), msg,
                         "ValidationError", details=info)
    return NodeError(None, None, f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".rstrip(": "),
                     error.get("type", "ValidationError"), details=error)


# ----------------------------------------------------------------------------------------------
# API format -> UI (frontend) format
# ----------------------------------------------------------------------------------------------

_WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
_CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
NODE_WIDTH = 320
COLUMN_GAP = 60
ROW_GAP = 40


def _input_specs(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, required) for every input of a node, in the frontend's order."""
    out = []
    inputs = info.get("input", {}) or {}
    order = info.get("input_order", {}) or {}
    for section in ("required", "optional"):
        sec = inputs.get(section) or {}
        names = [n for n in order.get(section, []) if n in sec] + [n for n in sec if n not in order.get(section, [])]
        for name in names:
            out.append((name, sec[name], section == "required"))
    return out


def is_widget_spec(spec: Any) -> bool:
    """True if the frontend draws a widget (and keeps a widgets_values slot) for this input spec."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return False
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput") or opts.get("defaultInput"):
        return False
    if isinstance(spec[0], (list, tuple)):
        return True
    return spec[0] in _WIDGET_TYPES


def has_control_after_generate(name: str, spec: Any) -> bool:
    """True if the frontend adds a control_after_generate companion after this widget (seeds)."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("control_after_generate") is not None:
        return bool(opts["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def default_of(spec: Any) -> Any:
    """The default a widget shows before the user touches it."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(spec[0], (list, tuple)):
        return spec[0][0] if spec[0] else None
    if spec[0] == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec[0])


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
        parents = [v[0] for v in prompt[nid].get("inputs", {}).values() if _is_link(v) and v[0] in prompt]
        d = 1 + max((visit(p, stack + (nid,)) for p in parents), default=-1)
        depth[nid] = d
        return d

    for nid in prompt:
        visit(nid)
    return depth


def _node_height(n_inputs: int, n_outputs: int, n_widgets: int) -> int:
    return 30 + 22 * max(n_inputs, n_outputs) + 24 * n_widgets + 10


def api_to_ui(
    prompt: dict,
    object_info: dict,
    *,
    title: str | None = None,
    positions: dict[str, tuple[float, float]] | None = None,
    groups: list[dict] | None = None,
    notes: list[dict] | None = None,
    control_after_generate: str = "fixed",
) -> dict:
    """A UI-format (frontend) workflow from an API-format ``prompt``.

    Node ids must be integer strings ("1", "2", ...): they are kept, so ``convert_ui_to_api`` of the
    result gives back ``prompt`` (plus defaults for inputs it left out, and ``_meta`` titles).
    Nodes are laid out left to right by graph depth unless ``positions`` ({id: (x, y)}) says otherwise.
    ``groups``: ``[{"title": str, "nodes": [ids], "color": "#rrggbb"?}]`` boxes around nodes.
    ``notes``: ``[{"text": str, "pos": (x, y)?, "size": (w, h)?}]`` MarkdownNote nodes (UI only).
    Widget values follow the frontend's order: inputs in ``input_order``, a ``control_after_generate``
    value after seed widgets.
    """
    for nid in prompt:
        if not str(nid).isdigit():
            raise ValueError(f"node id {nid!r}: UI workflows need integer node ids ('1', '2', ...)")
    positions = positions or {}
    depth = _depths(prompt)
    links: list[list] = []
    ui_nodes: dict[str, dict] = {}
    out_links: dict[tuple[str, int], list[int]] = {}

    # inputs and widgets
    for nid in sorted(prompt, key=int):
        node = prompt[nid]
        ctype = node["class_type"]
        if ctype not in object_info:
            raise KeyError(f"node {nid}: ComfyUI has no node {ctype!r} (is its pack loaded?)")
        info = object_info[ctype]
        values = node.get("inputs", {})
        ui_inputs, widgets = [], []
        for name, spec, _required in _input_specs(info):
            widget = is_widget_spec(spec)
            value = values.get(name, None)
            linked = _is_link(value)
            entry: dict[str, Any] = {"name": name, "type": _socket_type(spec), "link": None}
            if widget:
                entry["widget"] = {"name": name}
                if linked or name not in values:
                    widgets.append(default_of(spec))
                else:
                    v = value["__value__"] if isinstance(value, dict) and "__value__" in value else value
                    widgets.append(v)
                if has_control_after_generate(name, spec):
                    widgets.append(control_after_generate)
            if linked:
                link_id = len(links) + 1
                src, slot = value
                src_info = object_info[prompt[src]["class_type"]]
                ltype = src_info["output"][slot] if slot < len(src_info.get("output", [])) else entry["type"]
                ltype = "COMBO" if isinstance(ltype, (list, tuple)) else ltype
                links.append([link_id, int(src), slot, int(nid), None, ltype])
                entry["link"] = link_id
                out_links.setdefault((src, slot), []).append(link_id)
            ui_inputs.append(entry)
        for slot_index, entry in enumerate(ui_inputs):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot_index
        outputs = []
        names = info.get("output_name") or info.get("output") or []
        for slot, otype in enumerate(info.get("output", [])):
            outputs.append({"name": names[slot] if slot < len(names) else str(otype),
                            "type": "COMBO" if isinstance(otype, (list, tuple)) else otype,
                            "links": None, "slot_index": slot})
        meta_title = (node.get("_meta") or {}).get("title")
        n_sockets_in = sum(1 for e in ui_inputs if "widget" not in e)
        ui_node = {
            "id": int(nid), "type": ctype, "pos": [0, 0],
            "size": [NODE_WIDTH, _node_height(n_sockets_in, len(outputs), len(widgets))],
            "flags": {}, "order": 0, "mode": 0, "inputs": ui_inputs, "outputs": outputs,
            "properties": {"Node name for S&R": ctype}, "widgets_values": widgets,
        }
        if meta_title and meta_title != info.get("display_name", ctype):
            ui_node["title"] = meta_title
        ui_nodes[nid] = ui_node

    for (src, slot), ids in out_links.items():
        ui_nodes[src]["outputs"][slot]["links"] = ids

    # layout: columns by graph depth; each group is a horizontal band (groups in the order given, then
    # the ungrouped nodes), so group boxes never overlap; in a band's column, nodes sorted by the mean
    # height of their inputs (fewer crossing links), then by id
    group_of: dict[str, int] = {}
    for gi, g in enumerate(groups or []):
        for n in g.get("nodes", []):
            group_of.setdefault(str(n), gi)
    n_groups = len(groups or [])
    centre_y: dict[str, float] = {}
    band_top = 80
    for band in range(n_groups + 1):
        members = [nid for nid in prompt if group_of.get(nid, n_groups) == band]
        if not members:
            continue
        bottom = band_top
        for d in sorted({depth[nid] for nid in prompt}):
            def key(nid: str):
                parents = [v[0] for v in prompt[nid].get("inputs", {}).values() if _is_link(v) and v[0] in centre_y]
                bary = sum(centre_y[p] for p in parents) / len(parents) if parents else 0.0
                return (bary, int(nid))

            x = 50 + d * (NODE_WIDTH + COLUMN_GAP)
            y = band_top
            for nid in sorted((n for n in members if depth[n] == d), key=key):
                ui_nodes[nid]["pos"] = list(positions.get(nid, (x, y)))
                centre_y[nid] = ui_nodes[nid]["pos"][1] + ui_nodes[nid]["size"][1] / 2
                y += ui_nodes[nid]["size"][1] + ROW_GAP
            bottom = max(bottom, y)
        band_top = bottom + 60  # room for the next group's title bar
    order = sorted(prompt, key=lambda n: (depth[n], int(n)))
    for i, nid in enumerate(order):
        ui_nodes[nid]["order"] = i

    nodes_list = [ui_nodes[nid] for nid in sorted(prompt, key=int)]
    next_id = max([int(n) for n in prompt] + [0]) + 1
    for note in notes or []:
        size = list(note.get("size", (NODE_WIDTH, 160)))
        pos = list(note.get("pos", (50, max((n["pos"][1] + n["size"][1] for n in nodes_list), default=0) + ROW_GAP)))
        nodes_list.append({"id": next_id, "type": "MarkdownNote", "pos": pos, "size": size, "flags": {},
                           "order": len(nodes_list), "mode": 0, "inputs": [], "outputs": [],
                           "properties": {}, "widgets_values": [note["text"]],
                           **({"title": note["title"]} if note.get("title") else {})})
        next_id += 1

    ui_groups = []
    for g in groups or []:
        members = [ui_nodes[str(n)] for n in g.get("nodes", []) if str(n) in ui_nodes]
        if not members:
            continue
        x0 = min(m["pos"][0] for m in members) - 20
        y0 = min(m["pos"][1] for m in members) - 60
        x1 = max(m["pos"][0] + m["size"][0] for m in members) + 20
        y1 = max(m["pos"][1] + m["size"][1] for m in members) + 20
        ui_groups.append({"id": len(ui_groups) + 1, "title": g["title"], "bounding": [x0, y0, x1 - x0, y1 - y0],
                          "color": g.get("color", "#3f789e"), "font_size": 24, "flags": {}})

    extra: dict[str, Any] = {"ds": {"scale": 0.8, "offset": [0, 0]}}
    if title:
        extra["vek_title"] = title
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "video-enhance-kit:" + json.dumps(prompt, sort_keys=True, default=str))),
        "revision": 0,
        "last_node_id": next_id - 1,
        "last_link_id": len(links),
        "nodes": nodes_list,
        "links": links,
        "groups": ui_groups,
        "config": {},
        "extra": extra,
        "version": 0.4,
    }
