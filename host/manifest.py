"""The batch manifest: one JSON line per finished job, appended as it ends, read back by ``--resume``.

A record::

    {"input": "/abs/clip.mp4", "input_size": 123, "name": "clip", "status": "done" | "failed",
     "seconds": 12.3, "outputs": [{"path": "clip/video/x_00001_.mp4", "size": 4567, "sha256": "..."}],
     "error": null | {"node_id", "node_type", "type", "message"}, "settings": "<key>", "attempts": 1,
     "worker": "w0", "segment": null | [index, start, end]}

``settings`` is :func:`settings_key`: the workflow and every option that changes what a job computes. A line
is written whole (one write, flushed and synced) after the job's outputs are in place, so the manifest never
claims an output that is not there; a batch stopped mid-way leaves only finished jobs in it. ``--resume``
skips an input whose last whole-input record (no ``segment``) is ``done`` with the same settings, the same
input size, and outputs still present with their recorded sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST_NAME = "manifest.jsonl"


def settings_key(workflow: dict, settings: dict) -> str:
    """sha256 (16 hex digits) of the workflow and the settings, both as canonical JSON."""
    text = json.dumps({"workflow": workflow, "settings": settings}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path, root: Path) -> dict:
    """``{"path": relative to root, "size", "sha256"}`` of a written output."""
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)}


class Manifest:
    """The JSON lines file ``path``: :meth:`append` one record per finished job, :meth:`records` reads them."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        """Every whole line that parses (a line cut short by a crash is ignored)."""
        if not self.path.is_file():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "input" in record:
                found.append(record)
        return found

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # a line cut short by a crash stays on its own (and is ignored)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _outputs_present(record: dict, root: Path) -> bool:
    for entry in record.get("outputs") or []:
        path = root / entry["path"]
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
    return True


def completed(records: list[dict], root: Path, key: str) -> dict[str, dict]:
    """``{input: record}`` of inputs done with settings ``key`` whose outputs are still under ``root``.

    The last whole-input record of an input decides (a later failure or other settings undo an earlier success).
    """
    last: dict[str, dict] = {}
    for record in records:
        if record.get("segment") is None:
            last[record["input"]] = record
    return {i: r for i, r in last.items()
            if r.get("status") == "done" and r.get("settings") == key and _outputs_present(r, root)
            and (not Path(i).is_file() or Path(i).stat().st_size == r.get("input_size"))}


__all__ = ["MANIFEST_NAME", "Manifest", "completed", "file_entry", "settings_key", "sha256_file"]
