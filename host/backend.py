"""The one interface the runner drives ComfyUI through, and its in-process implementation.

:class:`Backend` is what ``python -m video_enhance_kit run|doctor`` needs: the host's /object_info,
``prepare`` (tiny-model substitution when asked), ``place_sample_clips`` and ``run``. Two backends
implement it: :class:`InProcessBackend` (ComfyUI started in this process, :class:`ComfyHost`) and
:class:`video_enhance_kit.host.server.ServerBackend` (a running ComfyUI server over HTTP).
"""

from __future__ import annotations

import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from ..nodes._registry import place_clip
from .errors import HostError
from .locate import sample_clip_path
from .progress import ProgressPrinter
from .prompt import referenced_sample_clips
from .results import PREVIEWS, RunResult, output_entries
from .tiny import substitute_tiny_models


class Backend(ABC):
    """Runs API-format prompts on some ComfyUI. ``substitutions``: what the last ``prepare`` changed."""

    substitutions: Sequence[str] = ()

    @abstractmethod
    def object_info(self) -> dict:
        """What GET /object_info returns on this ComfyUI."""

    @abstractmethod
    def prepare(self, prompt: dict) -> dict:
        """The prompt to run (with tiny models when the backend was made with ``tiny=True``)."""

    @abstractmethod
    def place_sample_clips(self, prompt: dict) -> None:
        """Put the bundled clips the prompt names where its LoadVideo nodes find them."""

    @abstractmethod
    def run(self, prompt: dict, progress: ProgressPrinter, out_dir: Path) -> RunResult:
        """Execute ``prompt``; output files end up under ``out_dir`` (``result.files``)."""

    def import_failures(self) -> dict[str, str]:
        """``{name: message}`` of this pack's import failures (empty when it loaded)."""
        return {}

    def builtin_failures(self) -> list[str]:
        """ComfyUI's own extras that failed to import (e.g. audio nodes without torchaudio)."""
        return []


def _copy_target(path: Path, out_dir: Path, output_root: Path, temp_root: Path) -> Path:
    if path.is_relative_to(temp_root):
        return out_dir / PREVIEWS / path.relative_to(temp_root)
    if path.is_relative_to(output_root):
        return out_dir / path.relative_to(output_root)
    return out_dir / path.name


class InProcessBackend(Backend):
    """Runs prompts in this process through :class:`video_enhance_kit.host.ComfyHost`.

    ComfyUI writes into the host's work folder; the files a run wrote are copied into ``--out``.
    ``tiny``: loaders are pointed at tiny random-weight models (built once, cached).
    """

    def __init__(self, comfyui: Path, tiny: bool = False, err=None, verbose: bool = False):
        from .comfy_host import ComfyHost

        self.tiny = tiny
        self.err = err or sys.stderr
        self.substitutions = []
        try:
            self.host = ComfyHost.start(comfyui, tiny_models=tiny, strict=False)
        except HostError as e:
            raise HostError(f"cannot start ComfyUI from {comfyui}: {e}") from None
        # the samplers' tqdm bars would interleave with the runner's own step bars (kept with -v)
        comfy_utils = sys.modules.get("comfy.utils")
        if comfy_utils is not None and hasattr(comfy_utils, "set_progress_bar_enabled"):
            comfy_utils.set_progress_bar_enabled(verbose)

    def object_info(self) -> dict:
        return self.host.object_info()

    def import_failures(self) -> dict[str, str]:
        return {f"video-enhance-kit ({i + 1})": msg for i, msg in enumerate(self.host.pack_errors)}

    def builtin_failures(self) -> list[str]:
        return list(self.host.builtin_import_failures)

    def place_sample_clips(self, prompt: dict) -> None:
        for name in referenced_sample_clips(prompt):
            place_clip(sample_clip_path(name), self.host.input_dir)

    def prepare(self, prompt: dict) -> dict:
        if not self.tiny:
            return prompt
        prompt, self.substitutions = substitute_tiny_models(prompt)
        return prompt

    def _sources(self, result: RunResult) -> list[Path]:
        """Files the run wrote (saved outputs and previews), and previews the outputs name."""
        sources = [Path(p) for p in result.files]
        for _node_id, item in output_entries(result.outputs):
            if item.get("type") == "temp":
                sources.append(Path(self.host.temp_dir) / (item.get("subfolder") or "") / item["filename"])
        return [p for p in dict.fromkeys(sources) if p.is_file()]

    def _copy_outputs(self, result: RunResult, out_dir: Path) -> list[Path]:
        files = []
        for path in self._sources(result):
            target = _copy_target(path, out_dir, Path(self.host.output_dir), Path(self.host.temp_dir))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            files.append(target)
        return files

    def run(self, prompt: dict, progress: ProgressPrinter, out_dir: Path) -> RunResult:
        result = self.host.run_prompt(prompt, on_message=progress.event)
        progress.close()
        result.files = self._copy_outputs(result, out_dir) if result.success else []
        return result
