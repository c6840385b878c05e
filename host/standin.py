"""What ComfyUI's PromptExecutor needs from its PromptServer, for runs without the HTTP server."""

from __future__ import annotations

import time
from collections.abc import Callable

FINISHED = ("execution_success", "execution_error", "execution_interrupted")


class ServerStandIn:
    """Collects the messages ComfyUI sends, times each executed node, forwards progress and messages."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.on_progress: Callable | None = None
        self.on_message: Callable | None = None
        self.reset()

    def reset(self) -> None:
        self.messages: list = []
        self.timings: dict = {}
        self._node_started: dict = {}
        self._current: str | None = None

    def _clock(self, event, data, now: float) -> None:
        if event == "executing":
            self._close_current(now)
            node = data.get("node") if isinstance(data, dict) else None
            self._current = node
            if node is not None:
                self._node_started[node] = now
        elif event in FINISHED:
            self._close_current(now)

    def send_sync(self, event, data, sid=None):
        if isinstance(event, str):
            self.messages.append((event, data))
        self._clock(event, data, time.perf_counter())
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
