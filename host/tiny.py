"""Tiny runs without ComfyUI: point a prompt's loaders at the tiny random-weight models, shrink its inputs.

Two sources of rules, applied to literal inputs only (a linked input stays linked):

- ComfyUI's own loaders (this module): CheckpointLoaderSimple -> the tiny SD1.5 checkpoint, UNETLoader ->
  tiny Wan 2.1, VAELoader -> tiny Wan VAE (names containing "wan") or tiny TAESD, CLIPLoader -> tiny
  CLIP-L (type "wan" becomes "sd3", whose output ComfyUI pads to Wan's 4096 channels), and the sample-clip
  reference: LoadVideo of ``vek_sample.mp4`` -> ``vek_sample_tiny.mp4`` (64 px, 9 frames).
- the pack's features: each feature file ``nodes/<feature>.py`` declares, next to its ``NODES``, a plain
  ``TINY = {"models": [...], "inputs": {class_type: {input: value}}}``; the registry reads these without
  importing the feature (so ``run --server --tiny`` applies them too) and this module sets the values.
  This module names no feature.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from ..nodes import _registry
from .locate import SAMPLE_CLIP_NAME, SAMPLE_CLIP_TINY_NAME, SAMPLE_CLIPS
from .prompt import choices, input_spec, is_link

SD15_CHECKPOINT = "vek-tiny-sd15.safetensors"
CLIP_L = "vek-tiny-clip-l.safetensors"
WAN21_MODEL = "vek-tiny-wan21.safetensors"
WAN21_VAE = "vek-tiny-wan21-vae.safetensors"
TAESD_VAE = "vek-tiny-taesd.safetensors"
#: Prefix of every tiny model file name (a server lists them among a loader's choices).
TINY_PREFIX = "vek-tiny-"

Rule = Callable[[dict], dict]


def _vae(i: dict) -> dict:
    return {**i, "vae_name": WAN21_VAE if "wan" in str(i.get("vae_name", "")).lower() else TAESD_VAE}


def _clip(i: dict) -> dict:
    # Wan's UMT5-XXL is 5.7 B params; ComfyUI pads an SD3-type CLIP-L output to Wan's 4096 channels.
    wan = str(i.get("type", "")).lower() == "wan"
    return {**i, "clip_name": CLIP_L, "type": "sd3" if wan else "stable_diffusion"}


def _video(i: dict) -> dict:
    # the 256 px, 25-frame sample clip -> its 64 px, 9-frame variant (assets/make_sample_clip.py --tiny)
    return {**i, "file": SAMPLE_CLIP_TINY_NAME} if i.get("file") == SAMPLE_CLIP_NAME else i


#: Rules for ComfyUI's own loaders: class_type -> fn(literal inputs) -> new inputs.
BUILTIN_RULES: dict[str, Rule] = {
    "CheckpointLoaderSimple": lambda i: {**i, "ckpt_name": SD15_CHECKPOINT},
    "UNETLoader": lambda i: {**i, "unet_name": WAN21_MODEL, "weight_dtype": "default"},
    "VAELoader": _vae,
    "CLIPLoader": _clip,
    "LoadVideo": _video,
}


def declared_inputs() -> dict[str, dict]:
    """``{class_type: {input: value}}`` from every feature's ``TINY["inputs"]``."""
    out: dict[str, dict] = {}
    for declaration in _registry.tiny_declarations().values():
        out.update(declaration.get("inputs") or {})
    return out


def tiny_rules(declared: dict[str, dict] | None = None) -> dict[str, Rule]:
    """Every rule: ComfyUI's loaders, then the features' declared input values (``declared``, default all)."""
    declared = declared_inputs() if declared is None else declared
    rules = dict(BUILTIN_RULES)
    for class_type, values in declared.items():
        rules[class_type] = lambda i, values=values: {**i, **values}
    return rules


def _substitute_node(node_id: str, node: dict, rule: Rule, changes: list[str]) -> None:
    literal = {k: v for k, v in node.get("inputs", {}).items() if not is_link(v)}
    for k, v in rule(dict(literal)).items():
        if is_link(node["inputs"].get(k)):
            continue  # a linked input stays linked
        if literal.get(k) != v:
            changes.append(f"{node_id} {node['class_type']}.{k}: {literal.get(k)!r} -> {v!r}")
            node["inputs"][k] = v


def substitute_tiny_models(prompt: dict, declared: dict[str, dict] | None = None) -> tuple[dict, list[str]]:
    """A copy of the API ``prompt`` whose loaders name tiny models and whose declared inputs are reduced; also a list of what changed."""
    rules = tiny_rules(declared)
    out = copy.deepcopy(prompt)
    changes: list[str] = []
    for node_id, node in out.items():
        rule = rules.get(node.get("class_type"))
        if rule is not None:
            _substitute_node(node_id, node, rule, changes)
    return out, changes


def _lacking(prompt: dict, object_info: dict):
    """(node_id, node, name, value, offered) for each combo value the host does not offer."""
    for node_id, node in prompt.items():
        for name, value in node.get("inputs", {}).items():
            offered = choices(input_spec(object_info, node.get("class_type"), name))
            if offered is not None and isinstance(value, str) and value not in offered and value not in SAMPLE_CLIPS:
                yield node_id, node, name, value, offered


def server_tiny_choices(prompt: dict, object_info: dict) -> tuple[dict, list[str]]:
    """A copy of ``prompt`` where a combo value the host lacks is replaced by the ``vek-tiny-*`` file it offers there."""
    prompt = copy.deepcopy(prompt)
    changes = []
    for node_id, node, name, value, offered in list(_lacking(prompt, object_info)):
        tiny = sorted(c for c in offered if isinstance(c, str) and c.startswith(TINY_PREFIX))
        if tiny:
            node["inputs"][name] = tiny[0]
            changes.append(f"{node_id} {node['class_type']}.{name}: {value!r} -> {tiny[0]!r} (the server's tiny model)")
    return prompt, changes


def missing_choices(prompt: dict, object_info: dict) -> list[str]:
    """``node node_id name=value`` for combo values the host does not offer (e.g. model files it lacks)."""
    return [f"node {node_id} {name}={value}" for node_id, _node, name, value, _ in _lacking(prompt, object_info)]
