"""Booting ComfyUI inside this process: flags, folders, the pack's link, node loading and its errors.

Every function here imports ComfyUI inside its body, after :func:`prepare_sys_path` put the ComfyUI
root on ``sys.path``; the module itself imports without ComfyUI.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from .errors import HostError
from .locate import PACK_DIR_NAME, PACK_ROOT, pack_entry

#: ComfyUI's top-level modules a pack root on sys.path would shadow.
SHADOWED = ("nodes", "utils", "server", "execution", "folder_paths", "comfy")


def define_torchvision_ops() -> None:
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
    define_torchvision_ops.lib = lib  # keep the library alive


def startup_failure(comfyui: Path, exc: BaseException) -> str:
    """The message for a ComfyUI that cannot start in this Python: the missing module (or the error) and the fix."""
    python, requirements = sys.executable, Path(comfyui) / "requirements.txt"
    install = f"install ComfyUI's requirements there: {python} -m pip install -r {requirements}"
    if isinstance(exc, ImportError):
        missing = exc.name or str(exc)
        return (f"this Python ({python}) lacks module {missing!r}, one of ComfyUI's requirements ({exc}). "
                f"Fix: run with ComfyUI's own Python (the one that starts its main.py), or {install}")
    return (f"ComfyUI fails to start in this Python ({python}): {type(exc).__name__}: {exc}. Fix: run with ComfyUI's own "
            f"Python, or {install} (run with -v for ComfyUI's log)")


def comfy_argv(device: str, extra: list[str] | None) -> list[str]:
    """ComfyUI flags for ``device`` ("auto", "cpu" or "gpu"; see :meth:`ComfyHost.start`)."""
    if device not in ("auto", "cpu", "gpu"):
        raise HostError(f"device={device!r}: use 'auto', 'cpu' or 'gpu'")
    if device == "auto":
        import torch

        accelerated = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or \
            (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
        device = "gpu" if accelerated else "cpu"
    return (["--cpu"] if device == "cpu" else []) + list(extra or [])


def check_module_shadowing(comfyui: Path) -> None:
    """Raise :class:`HostError` if a module named like one of ComfyUI's is already imported from elsewhere."""
    for name in SHADOWED:
        mod = sys.modules.get(name)
        if mod is None:
            continue
        origin = getattr(mod, "__file__", None) or str(getattr(mod, "__path__", [""])[0] if hasattr(mod, "__path__") else "")
        if origin and not Path(origin).resolve().is_relative_to(comfyui.resolve()):
            raise HostError(f"a module named {name!r} from {origin} is already imported and would shadow "
                            f"ComfyUI's; start the host before importing it (never put the pack root on sys.path)")


def prepare_sys_path(comfyui: Path) -> None:
    """ComfyUI's root first on sys.path, torchvision importable."""
    check_module_shadowing(comfyui)
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))
    define_torchvision_ops()


def parse_comfy_args(comfyui: Path, argv: list[str]) -> None:
    """Let ComfyUI parse ``argv`` as its command line (``comfy.cli_args`` reads sys.argv on import)."""
    saved_argv = sys.argv
    sys.argv = [os.path.join(str(comfyui), "main.py"), *argv]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy.cli_args
    finally:
        sys.argv = saved_argv


def set_folders(input_dir: Path, output_dir: Path, temp_dir: Path, user_dir: Path, models_dir: Path) -> None:
    """Point ComfyUI's input/output/temp/user folders at ours, and add ``models_dir/<name>`` to each model folder."""
    import folder_paths
    import utils.extra_config  # noqa: F401  ComfyUI's `utils` package, before nodes.py puts comfy/ first on sys.path

    folder_paths.set_output_directory(str(output_dir))
    folder_paths.set_input_directory(str(input_dir))
    folder_paths.set_temp_directory(str(temp_dir))
    folder_paths.set_user_directory(str(user_dir))
    for name in list(folder_paths.folder_names_and_paths):
        if name in ("custom_nodes", "configs"):
            continue
        path = models_dir / name
        path.mkdir(exist_ok=True)
        folder_paths.add_model_folder_path(name, str(path), is_default=True)


def link_pack(comfyui: Path, custom_nodes_dir: Path) -> Path:
    """The pack's folder ComfyUI loads: its own custom_nodes entry if there, else a symlink in ``custom_nodes_dir``."""
    import folder_paths

    entry = pack_entry(comfyui)
    if entry is not None:
        return entry
    custom_nodes_dir.mkdir(exist_ok=True)
    link = custom_nodes_dir / PACK_DIR_NAME
    if not link.exists():
        os.symlink(PACK_ROOT.resolve(), link, target_is_directory=True)
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(custom_nodes_dir)], set())
    return link


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def init_nodes(loop) -> tuple[list[str], list[logging.LogRecord]]:
    """Load ComfyUI's extras and the custom nodes: (names of extras that failed, warnings logged meanwhile)."""
    import nodes

    handler = _Collect()
    root_logger = logging.getLogger()
    root_logger.addHandler(handler)
    try:
        failed = loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    finally:
        root_logger.removeHandler(handler)
    return list(failed or []), handler.records


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001
        return str(record.msg)


def pack_errors(records: list[logging.LogRecord], pack_path: Path, module_name: str, loop) -> list[str]:
    """The pack's import problems from ComfyUI's log, with the traceback ComfyUI did not log."""
    errors = [m for m in map(_message, records) if str(pack_path) in m or PACK_DIR_NAME in m]
    if module_name not in sys.modules:
        return errors + [f"ComfyUI did not import the pack from {pack_path}"]
    if errors:
        # ComfyUI logs only str(e) when comfy_entrypoint fails: find the traceback for the report
        try:
            extension = loop.run_until_complete(sys.modules[module_name].comfy_entrypoint())
            for cls in loop.run_until_complete(extension.get_node_list()):
                cls.GET_SCHEMA()
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc())
    return errors
