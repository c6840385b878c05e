"""Printing a run's progress: which node runs, a step bar for nodes that report progress."""

from __future__ import annotations

import sys
from typing import Any

from ..utils.memory import report_lines, ui_reports
from .results import NodeError, execution_error

BAR_WIDTH = 24


class ProgressPrinter:
    """Prints ComfyUI's execution events to ``stream``; remembers the executed nodes and the failure.

    ``event(name, data)`` takes a websocket message ``{type, data}`` or a ``send_sync`` call; on a
    terminal the step bar is redrawn in place, elsewhere only its first and last step are printed.
    """

    def __init__(self, prompt: dict | None = None, stream=None, quiet: bool = False):
        self.prompt = prompt or {}
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.node: str | None = None
        self.last_bar = ""
        self.executed: list[str] = []
        self.cached: set[str] = set()
        self.error: NodeError | None = None
        self.memory_reports: list[tuple[str, dict]] = []

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

    def _executing(self, data: dict) -> None:
        node = data.get("node")
        if node is not None and node != self.node:
            self.node = node
            self.executed.append(str(node))
            self._print(f"running {self._label(node)}")

    def _progress(self, data: dict) -> None:
        value, total = data.get("value", 0), data.get("max", 0) or 1
        filled = int(BAR_WIDTH * value / total)
        bar = f"  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {value}/{total} {self._label(data.get('node', self.node))}"
        if self.tty:
            self._print(bar, bar=True)
        elif value == total or value == 1:
            self._print(bar)

    def _executed(self, data: dict) -> None:
        """A node's UI output: print the memory reports it carries (``utils.memory.UI_KEY``; kept when quiet)."""
        node = str(data.get("node"))
        for report in ui_reports(data.get("output")):
            self.memory_reports.append((node, report))
            if self.quiet:
                continue
            title = f"{self._label(node)} peak memory" + (" (cached, from its earlier run)" if node in self.cached else "")
            lines = report_lines(report, title)
            if self.tty and self.last_bar:
                self.stream.write("\r\033[K")
                self.last_bar = ""
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()

    def event(self, name: str, data: Any) -> None:
        """Handle one ComfyUI event."""
        if not isinstance(data, dict):
            return
        if name == "executing":
            self._executing(data)
        elif name == "execution_cached":
            nodes = data.get("nodes") or []
            self.cached.update(map(str, nodes))
            if nodes:
                self._print(f"cached: {', '.join(map(str, nodes))}")
        elif name == "progress":
            self._progress(data)
        elif name == "executed":
            self._executed(data)
        elif name == "websocket_lost":
            self._print(f"lost the websocket ({data.get('reason')}); waiting by polling /history")
        else:
            self.error = execution_error(name, data) or self.error

    def close(self) -> None:
        if self.tty and self.last_bar and not self.quiet:
            self.stream.write("\n")
            self.last_bar = ""
