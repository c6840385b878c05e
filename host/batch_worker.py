"""The worker side of the batch runner: one :class:`BatchWorker` per Ray actor, holding one started runner.

A runner turns (prompt, clip) into output files. :class:`ComfyRunner` starts ComfyUI in-process once (through
:class:`~video_enhance_kit.host.backend.InProcessBackend`, so models stay loaded between jobs) and, per job,
writes the clip into ComfyUI's input folder, points the video-loading input at it, runs the prompt and hands
back the files the run wrote (names relative to ComfyUI's output folder, previews under ``previews/``, text
outputs as ``text/node<ID>.txt``), then empties the output folders so the next job's files get the same
names a single run gives. This module imports neither Ray nor ComfyUI at import time.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .batch_jobs import InputNode, job_prompt
from .progress import ProgressPrinter
from .results import text_outputs


@dataclass
class RunOutput:
    """What a runner gives back for one job: ``files`` {relative path: bytes}, ``error`` (None on success)."""

    files: dict[str, bytes] = field(default_factory=dict)
    error: dict | None = None


@dataclass
class Outcome:
    """What a worker gives back: ``files`` {path: bytes} (``shared``: already written under ``shared_dir``)."""

    job_id: str
    worker: str
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)
    error: dict | None = None


def error_dict(node_error) -> dict:
    """The manifest's error of a ComfyUI failure: node, its type, ComfyUI's exception type and message."""
    return {"node_id": node_error.node_id, "node_type": node_error.node_type, "type": node_error.exception_type
            or node_error.kind, "message": node_error.describe()}


def exception_dict(exc: BaseException) -> dict:
    return {"node_id": None, "node_type": None, "type": type(exc).__name__, "message": str(exc)}


class _Reporter(ProgressPrinter):
    """A quiet ProgressPrinter that also sends "node N (Type) v/max" to ``report`` (at most every 0.3 s)."""

    def __init__(self, prompt: dict, report):
        super().__init__(prompt, quiet=True)
        self.report, self.last = report, 0.0

    def event(self, name, data) -> None:
        super().event(name, data)
        if name not in ("executing", "progress") or not isinstance(data, dict) or self.node is None:
            return
        now = time.monotonic()
        if name == "progress" and now - self.last < 0.3 and data.get("value") != data.get("max"):
            return
        self.last = now
        step = f" {data.get('value')}/{data.get('max')}" if name == "progress" else ""
        self.report(self._label(self.node) + step)


@dataclass
class ComfyRunnerFactory:
    """Builds a :class:`ComfyRunner` inside the actor (picklable: paths and flags only)."""

    comfyui: str | None = None
    tiny: bool = False
    max_steps: int | None = None
    threads: int | None = None
    verbose: bool = False

    def __call__(self) -> ComfyRunner:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return ComfyRunner(self)


class ComfyRunner:
    """ComfyUI in this process (started once), running one job after another."""

    def __init__(self, spec: ComfyRunnerFactory):
        from .backend import InProcessBackend
        from .locate import find_comfyui

        root = find_comfyui(spec.comfyui)
        if root is None:
            from .errors import HostError
            from .locate import describe_missing_comfyui

            raise HostError(f"worker on {socket.gethostname()}: {describe_missing_comfyui(spec.comfyui)}")
        self.spec = spec
        self.backend = InProcessBackend(root, tiny=spec.tiny, verbose=spec.verbose)
        self.host = self.backend.host

    def prepare(self, workflow: dict, overrides: list[str]) -> dict:
        """The API prompt of ``workflow`` with ``--set`` applied, tiny models and step cap as asked."""
        from .overrides import Override, apply_overrides
        from .prompt import cap_steps, to_api

        info = self.backend.object_info()
        prompt = self.backend.prepare(apply_overrides(to_api(workflow, info), map(Override.parse, overrides), info))
        return cap_steps(prompt, self.spec.max_steps)[0] if self.spec.max_steps else prompt

    def _clear_outputs(self) -> None:
        for folder in (Path(self.host.output_dir), Path(self.host.temp_dir)):
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def run(self, prompt: dict, node: InputNode, file_name: str, data: bytes, report) -> RunOutput:
        clip = Path(self.host.input_dir) / file_name
        clip.write_bytes(data)
        prompt = job_prompt(prompt, node, clip)
        out_dir = Path(tempfile.mkdtemp(prefix="vek-batch-job-"))
        try:
            result = self.backend.run(prompt, _Reporter(prompt, report), out_dir)
            if not result.success:
                return RunOutput(error=error_dict(result.error) if result.error else
                                 {"node_id": None, "node_type": None, "type": "failed", "message": result.error_text})
            files = {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in result.files}
            for node_id, text in text_outputs(result.outputs):
                files[f"text/node{node_id}.txt"] = text.encode()
            return RunOutput(files=files)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
            clip.unlink(missing_ok=True)
            self._clear_outputs()


class BatchWorker:
    """The actor's body: builds the runner once (``factory()``), then runs jobs; ``board`` shows its progress."""

    def __init__(self, worker_id: str, factory, board=None):
        t0 = time.perf_counter()
        self.worker_id, self.board = worker_id, board
        self.runner = factory()
        self.startup_s = time.perf_counter() - t0

    def info(self) -> dict:
        return {"worker": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(), "startup_s": self.startup_s}

    def prepare(self, workflow: dict, overrides: list[str]) -> dict:
        return self.runner.prepare(workflow, overrides)

    def _report(self, label: str | None):
        def report(text: str) -> None:
            if self.board is not None:
                self.board.set.remote(self.worker_id, f"{label}: {text}" if label else text)

        return report

    def run(self, job_id: str, label: str, prompt: dict, node: InputNode, file_name: str, data: bytes,
            shared_dir: str | None = None) -> Outcome:
        """Run one job; a runner exception comes back as the outcome's error (the worker stays usable)."""
        t0 = time.perf_counter()
        self._report(label)("starting")
        try:
            output = self.runner.run(prompt, node, file_name, data, self._report(label))
        except Exception as e:  # noqa: BLE001  every failure of a job is reported, the worker goes on
            output = RunOutput(error=exception_dict(e))
        outcome = Outcome(job_id, self.worker_id, time.perf_counter() - t0, error=output.error)
        if shared_dir is None or output.error:
            outcome.files = output.files
        else:
            for rel, blob in output.files.items():
                target = Path(shared_dir) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
                outcome.shared.append(rel)
        self._report(None)("idle")
        return outcome


__all__ = ["BatchWorker", "ComfyRunner", "ComfyRunnerFactory", "Outcome", "RunOutput", "error_dict", "exception_dict"]
