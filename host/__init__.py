"""Driving ComfyUI from outside the node layer: the headless runner's, the host tests' and the tools' host.

Nothing here imports ComfyUI at import time (the CLI imports it before ComfyUI is on sys.path).

=================  ==========================================================================
module             what it holds
=================  ==========================================================================
``locate``         the pack root, its sample clips, finding ComfyUI (``find_comfyui``)
``boot``           starting ComfyUI in this process (flags, folders, the pack's link, errors)
``comfy_host``     :class:`ComfyHost`: ComfyUI in-process (``run_prompt``, ``run_workflow``, ``run_node``)
``standin``        the PromptServer stand-in the in-process executor reports to
``object_info``    /object_info entries built in-process
``backend``        :class:`Backend` (the runner's one interface) and :class:`InProcessBackend`
``server``         :class:`ServerClient` and :class:`ServerBackend` (a running server over HTTP)
``prompt``         host-free transforms: formats, links, UI -> API, input specs, ``cap_steps``
``overrides``      ``--set NODE.INPUT=VALUE``: parsing, coercion by the declared type
``tiny``           host-free tiny runs: loader substitution, the features' ``TINY`` inputs
``tiny_models``    the tiny random-weight models and their cache
``results``        :class:`RunResult`, :class:`NodeError`, error messages, output files
``progress``       :class:`ProgressPrinter` (execution events as text)
``errors``         the errors, each with its exit code
=================  ==========================================================================
"""

from .backend import Backend, InProcessBackend
from .comfy_host import ComfyHost, NodeOutputs
from .errors import HostError, HostRunError, RunnerError, UsageError
from .locate import (
    PACK_ROOT,
    describe_missing_comfyui,
    find_comfyui,
    pack_in_custom_nodes,
)
from .results import NodeError, RunResult
from .tiny import substitute_tiny_models

__all__ = [
    "PACK_ROOT", "Backend", "ComfyHost", "HostError", "HostRunError", "InProcessBackend", "NodeError", "NodeOutputs",
    "RunResult", "RunnerError", "UsageError", "describe_missing_comfyui", "find_comfyui", "pack_in_custom_nodes",
    "substitute_tiny_models",
]
