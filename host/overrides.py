"""``--set NODE_ID.INPUT=VALUE``: parse, coerce by the input's declared type in /object_info, apply."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .locate import SAMPLE_CLIPS
from .prompt import declared_inputs, input_spec, is_link, node_id_key, spec_options

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class Override:
    """One ``--set NODE_ID.INPUT=VALUE``."""

    node_id: str
    input: str
    raw: str

    @classmethod
    def parse(cls, text: str) -> Override:
        target, sep, raw = text.partition("=")
        node_id, dot, name = target.strip().partition(".")
        if not sep or not dot or not node_id or not name:
            raise UsageError(f"--set {text!r}: expected NODE_ID.INPUT=VALUE, e.g. --set 3.seed=42 or --set 7.text=\"a red fox\"")
        return cls(node_id.strip(), name.strip(), raw)


def _check_range(value, opts: dict, where: str):
    low, high = opts.get("min"), opts.get("max")
    if low is not None and value < low or high is not None and value > high:
        raise UsageError(f"{where}: {value} is outside its range [{low}, {high}]")
    return value


def _coerce_combo(raw: str, choices: list, where: str):
    if not choices or raw in choices:
        return raw
    for choice in choices:  # numeric combos (e.g. [1, 2, 4]) are declared as numbers
        if not isinstance(choice, str) and str(choice) == raw:
            return choice
    shown = ", ".join(map(str, choices[:12])) + (", ..." if len(choices) > 12 else "")
    raise UsageError(f"{where}: {raw!r} is not one of the choices: {shown}")


def _coerce_int(raw: str, where: str) -> int:
    try:
        return int(raw.strip().replace("_", ""))
    except ValueError:
        try:
            f = float(raw)
        except ValueError:
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise UsageError(f"{where} is an INT: {raw!r} is not a whole number") from None
        return int(f)


def _coerce_float(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{where} is a FLOAT: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{where} is a FLOAT: {raw!r} is not a finite number")
    return value


def _coerce_bool(raw: str, where: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UsageError(f"{where} is a BOOLEAN: {raw!r} is not one of true/false (also 1/0, yes/no, on/off)")


def coerce(raw: str, spec: list, where: str) -> Any:
    """``raw`` converted to the type of ``spec`` (``[type, options]`` from /object_info), range-checked."""
    kind, opts = spec[0], spec_options(spec)
    if isinstance(kind, (list, tuple)) or kind == "COMBO":
        return _coerce_combo(raw, list(kind) if isinstance(kind, (list, tuple)) else list(opts.get("options", [])), where)
    if kind == "INT":
        return _check_range(_coerce_int(raw, where), opts, where)
    if kind == "FLOAT":
        return _check_range(_coerce_float(raw, where), opts, where)
    if kind == "BOOLEAN":
        return _coerce_bool(raw, where)
    if kind == "STRING":
        return raw
    # another type (a socket such as MODEL or a custom widget): accept JSON, else the text itself
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _override_value(o: Override, node: dict, object_info: dict) -> Any:
    class_type = node.get("class_type")
    where = f"--set {o.node_id}.{o.input} (node {o.node_id}, {class_type})"
    spec = input_spec(object_info, class_type, o.input)
    if spec is None:
        names = declared_inputs(object_info, class_type) or sorted(node.get("inputs", {}))
        raise UsageError(f"{where}: {class_type} has no input {o.input!r}; its inputs: {', '.join(names)}")
    current = node.get("inputs", {}).get(o.input)
    if is_link(current):
        raise UsageError(f"{where}: this input is connected to node {current[0]}'s output {current[1]}; --set changes widget values only")
    if o.raw in SAMPLE_CLIPS and isinstance(spec[0], (list, tuple, str)):
        return o.raw  # the runner places the bundled clips before running: not yet among the choices
    return coerce(o.raw, spec, where)


def apply_overrides(prompt: dict, overrides: Iterable[Override], object_info: dict) -> dict:
    """A copy of the API prompt with every override applied (values coerced by their declared types)."""
    prompt = copy.deepcopy(prompt)
    for o in overrides:
        node = prompt.get(o.node_id)
        if node is None:
            ids = ", ".join(f"{k} ({v.get('class_type')})" for k, v in sorted(prompt.items(), key=lambda kv: node_id_key(kv[0])))
            raise UsageError(f"--set {o.node_id}.{o.input}: the workflow has no node {o.node_id!r}; its nodes: {ids}")
        node.setdefault("inputs", {})[o.input] = _override_value(o, node, object_info)
    return prompt


def apply_input_values(prompt: dict, values: dict[str, Any]) -> dict:
    """A copy of ``prompt`` with ``{"NODE_ID.input": value}`` set as given (Python values, no coercion)."""
    prompt = copy.deepcopy(prompt)
    for key, value in (values or {}).items():
        node_id, _, name = key.partition(".")
        if node_id not in prompt or not name:
            raise UsageError(f"override {key!r}: no node {node_id!r} in the workflow (ids: {sorted(prompt)})")
        prompt[node_id]["inputs"][name] = value
    return prompt
