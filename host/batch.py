"""The Ray side of the batch runner: start or join Ray, a pool of :class:`BatchWorker` actors, the job loop.

Ray is imported only here, inside functions (``pip install "video-enhance-kit[ray]"``). Each actor holds one
started runner (ComfyUI in-process) and runs one job at a time; an actor that dies (its process killed, out
of memory) is replaced by a new one and its job sent again, at most ``retries`` more times. A job that fails
inside a living actor is not retried (the same inputs would fail the same way).
"""

from __future__ import annotations

import logging
import socket
import sys
from collections import deque
from collections.abc import Callable
from urllib.parse import urlparse

from .batch_jobs import Job
from .batch_worker import BatchWorker, Outcome
from .errors import HostError, UsageError

RAY_MISSING = ("the batch command needs Ray, which is not installed: pip install \"video-enhance-kit[ray]\" "
               "(or pip install \"ray>=2.9\")")
BAR_WIDTH = 20


def import_ray():
    try:
        import ray
    except ImportError:
        raise HostError(RAY_MISSING) from None
    return ray


def check_address(address: str, timeout: float) -> None:
    """Raise :class:`HostError` unless something accepts a TCP connection at ``address`` within ``timeout`` s."""
    if address == "auto":
        return
    url = urlparse(address if "://" in address else f"ray-gcs://{address}")
    port = url.port or (10001 if url.scheme == "ray" else 6379)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", port), timeout=timeout):
            pass
    except OSError as e:
        raise HostError(f"no Ray cluster answers at {address} ({e}; tried for {timeout:.0f} s): start its head "
                        "there with `ray start --head`, or check the address, port and firewall") from None


def start_ray(address: str | None, verbose: bool = False, timeout: float = 10.0, num_cpus: int | None = None):
    """``ray.init()``: a local instance (``address`` None) or the cluster at ``address``; Ray's log quiet unless verbose.

    An already initialised Ray (a test's, a notebook's) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    quiet = {"logging_level": logging.INFO if verbose else logging.ERROR, "log_to_driver": verbose}
    if address:
        check_address(address, timeout)
    else:
        quiet.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"no Ray cluster answers at {address}" if address else "cannot start a local Ray instance"
        raise HostError(f"{where}: {e} (a cluster's head starts with `ray start --head`; "
                        "its address is the one `ray start --head` prints)") from None
    return ray


class ProgressBoard:
    """A tiny actor the workers post their current node to; the driver reads it for the bar."""

    def __init__(self):
        self.state: dict[str, str] = {}

    def set(self, worker: str, text: str) -> None:
        self.state[worker] = text

    def snapshot(self) -> dict[str, str]:
        return dict(self.state)


def worker_resources(ray, workers: int | None) -> tuple[int, dict]:
    """How many actors and what each asks for: one per GPU (``num_gpus=1``), else ``workers`` on CPU."""
    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 1))
    if gpus:
        n = workers or gpus
        if n > gpus:
            raise UsageError(f"--workers {n}: the cluster has {gpus} GPU(s), one worker each")
        return n, {"num_gpus": 1, "num_cpus": max(1, min(4, cpus // n))}
    n = workers or 1
    if n > cpus:
        raise UsageError(f"--workers {n}: the cluster has {cpus} CPU(s), one worker needs at least one")
    return n, {"num_gpus": 0, "num_cpus": max(1, cpus // n)}


def _cause(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":")[0]]
    return (errors or lines or [type(exc).__name__])[-1][:500]


class Pool:
    """Actors by worker id (``w0``, ``w1``, ...; a replacement gets the next id)."""

    def __init__(self, ray, factory, resources: dict, board=None):
        self.ray, self.factory, self.board = ray, factory, board
        self.cls = ray.remote(BatchWorker).options(max_restarts=0, max_task_retries=0, **resources)
        self.actors: dict[str, object] = {}
        self.info: dict[str, dict] = {}
        self.count = 0

    def start(self, n: int) -> list[str]:
        """Start ``n`` actors in parallel and wait until each has started its runner."""
        ids = [f"w{self.count + i}" for i in range(n)]
        self.count += n
        handles = {i: self.cls.remote(i, self.factory, self.board) for i in ids}
        try:
            infos = self.ray.get([h.info.remote() for h in handles.values()])
        except self.ray.exceptions.RayError as e:
            raise HostError(f"a batch worker could not start: {_cause(e)}") from None
        self.actors.update(handles)
        self.info.update(zip(ids, infos, strict=True))
        return ids

    def replace(self, worker: str) -> str:
        self.actors.pop(worker, None)
        return self.start(1)[0]

    def shutdown(self) -> None:
        for handle in self.actors.values():
            self.ray.kill(handle)
        self.actors.clear()


class BatchBar:
    """One overall line: jobs done / total and each worker's current node (redrawn on a terminal)."""

    def __init__(self, total: int, stream=None, quiet: bool = False):
        self.total, self.done, self.failed = total, 0, 0
        self.stream, self.quiet = stream or sys.stderr, quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = ""

    def line(self, workers: dict[str, str]) -> str:
        filled = int(BAR_WIDTH * self.done / max(1, self.total))
        failed = f", {self.failed} failed" if self.failed else ""
        busy = " | ".join(f"{w} {t}" for w, t in sorted(workers.items()))
        return f"batch [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} done{failed}" + \
            (f" | {busy}" if busy else "")

    def draw(self, workers: dict[str, str]) -> None:
        if self.quiet or not self.tty:
            return
        self.last = self.line(workers)
        self.stream.write("\r\033[K" + self.last[:200])
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a job ended, a worker died), above the bar."""
        if self.quiet:
            return
        self.stream.write(("\r\033[K" if self.tty and self.last else "") + text + "\n")
        self.stream.flush()
        self.last = ""


DIED = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "OutOfMemoryError")


def _outcome(ray, ref, job: Job, worker: str) -> Outcome | None:
    """The job's outcome; None when its actor died (process killed, out of memory)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        if any(cls.__name__ in DIED for cls in type(e).__mro__):
            job.info["died"] = _cause(e)
            return None
        return Outcome(job.id, worker, 0.0, error={"node_id": None, "node_type": None, "type": type(e).__name__,
                                                    "message": _cause(e)})


def run_jobs(pool: Pool, jobs: list[Job], submit: Callable, accept: Callable[[Job, Outcome], None],
             retries: int = 1, bar: BatchBar | None = None, poll_s: float = 0.5) -> None:
    """Send ``jobs`` to the pool's idle actors (``submit(actor, job) -> ref``); ``accept`` each outcome once."""
    ray, queue, running = pool.ray, deque(jobs), {}
    idle = deque(pool.actors)
    while queue or running:
        while queue and idle:
            worker, job = idle.popleft(), queue.popleft()
            job.attempts += 1
            running[submit(pool.actors[worker], job)] = (job, worker)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
        for ref in ready:
            job, worker = running.pop(ref)
            outcome = _outcome(ray, ref, job, worker)
            if outcome is not None:
                idle.append(worker)
                accept(job, outcome)
                continue
            idle.append(pool.replace(worker))
            if job.attempts <= retries:
                _note(bar, f"worker {worker} died running {job.name} ({job.info['died']}): retrying on a new worker")
                queue.appendleft(job)
            else:
                accept(job, Outcome(job.id, worker, 0.0, error={"node_id": None, "node_type": None, "type": "WorkerDied",
                                                                "message": f"the worker died {job.attempts} times: {job.info['died']}"}))
        if bar is not None and bar.tty and not bar.quiet and pool.board is not None:
            bar.draw({w: t for w, t in _snapshot(ray, pool.board).items() if w in pool.actors})


def _note(bar: BatchBar | None, text: str) -> None:
    if bar is not None:
        bar.note(text)


def _snapshot(ray, board) -> dict[str, str]:
    try:
        return ray.get(board.snapshot.remote(), timeout=2)
    except Exception:  # noqa: BLE001  the bar is best effort
        return {}


__all__ = ["RAY_MISSING", "BatchBar", "Pool", "ProgressBoard", "check_address", "import_ray", "run_jobs", "start_ray",
           "worker_resources"]
