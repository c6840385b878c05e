"""A stand-in workflow runner for the batch pool: no ComfyUI, the output is the input (tests, pool benchmarks).

:class:`EchoFactory` builds an :class:`EchoRunner` in each actor. A job sleeps ``delay_s`` (reporting a step
bar), raises ``RuntimeError`` when its clip's name contains ``fail_marker``, and otherwise gives back its
clip unchanged as ``echo<suffix>`` (a pass-through job: segments stitched from it reproduce the input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePath

from .batch_worker import RunOutput


@dataclass
class EchoFactory:
    delay_s: float = 0.0
    fail_marker: str | None = None
    startup_s: float = 0.0

    def __call__(self) -> EchoRunner:
        time.sleep(self.startup_s)
        return EchoRunner(self.delay_s, self.fail_marker)


class EchoRunner:
    """Pass-through jobs: ``prepare`` keeps the (API-format) workflow, ``run`` returns the clip."""

    def __init__(self, delay_s: float = 0.0, fail_marker: str | None = None):
        self.delay_s, self.fail_marker = delay_s, fail_marker

    def prepare(self, workflow: dict, overrides: list[str]) -> dict:
        return dict(workflow)

    def run(self, prompt: dict, node, file_name: str, data: bytes, report) -> RunOutput:
        steps = 10
        for step in range(1, steps + 1):
            time.sleep(self.delay_s / steps)
            report(f"node {node.node_id} ({node.class_type}) {step}/{steps}")
        if self.fail_marker and self.fail_marker in file_name:
            raise RuntimeError(f"stand-in failure on {file_name}")
        return RunOutput(files={f"echo{PurePath(file_name).suffix}": data})


__all__ = ["EchoFactory", "EchoRunner"]
