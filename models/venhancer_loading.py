"""Load VEnhancer checkpoints: the official ``.pt`` files and safetensors conversions (fp32 / fp16).

Never executes a pickle: ``.pt`` files go through ``torch.load(weights_only=True)``; a file whose pickle
needs code execution is refused with :class:`CheckpointError`. A top-level ``"state_dict"`` is unwrapped
(as the official loader does). The network config is read from safetensors metadata
(``venhancer_config``, written by :func:`save_venhancer`) or inferred from the tensor shapes.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict

import torch

from .venhancer import OFFICIAL_CONFIG, VEnhancerConfig, VEnhancerUNet, official_key

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFE_SUFFIXES = (".safetensors", ".sft")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint file (safetensors or a weights-only torch pickle)."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{name}: file not found ({path})")
    lower = path.lower()
    if lower.endswith(SAFE_SUFFIXES):
        from safetensors import safe_open

        sd, meta = {}, {}
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for k in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                sd[k] = f.get_tensor(k)
        return sd, meta
    if lower.endswith(PICKLE_SUFFIXES):
        try:
            try:  # memory-mapped: the 8 GB fp32 file is not read into RAM at once
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{name}: refused, its pickle needs code execution to load ({str(err).splitlines()[0]}). "
                "Only plain tensor checkpoints are loaded (torch.load weights_only=True); convert it to "
                "safetensors with a trusted tool, or re-download the official venhancer_paper.pt / venhancer_v2.pt"
            ) from None
        except RuntimeError as err:
            raise CheckpointError(f"{name}: not a readable torch checkpoint ({err})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{name}: holds no state dict of tensors (got {type(obj).__name__})")
        return dict(obj), {}
    raise CheckpointError(f"{name}: unknown checkpoint format; use .pt/.pth (official) or .safetensors")


def infer_config(sd: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> VEnhancerConfig:
    """The network config: safetensors metadata if present, else inferred from shapes (head_dim 64 as upstream)."""
    if meta and "venhancer_config" in meta:
        raw = json.loads(meta["venhancer_config"])
        raw["channel_mult"] = tuple(raw["channel_mult"])
        return VEnhancerConfig(**raw)
    try:
        ch = sd["time_embed.0.weight"].shape[1]
        in_ch = sd["input_blocks.0.0.weight"].shape[1]
        out_ch = sd["out.2.weight"].shape[0]
        context = sd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]  # the spatial transformer
        temporal_inner = sd["input_blocks.0.1.proj_in.weight"].shape[0]
    except KeyError:
        raise CheckpointError(
            "the file is not a VEnhancer checkpoint (no time_embed / input_blocks / out keys); "
            "use venhancer_paper.pt, venhancer_v2.pt or a safetensors conversion of them"
        ) from None
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")})
    mults, attn_levels, res_per_level, level, count = [], 0, [], 0, 0
    for b in blocks[1:]:
        if f"input_blocks.{b}.op.weight" in sd:
            res_per_level.append(count)
            count, level = 0, level + 1
            continue
        out = sd[f"input_blocks.{b}.0.in_layers.2.weight"].shape[0]
        if count == 0:
            mults.append(out // ch)
            if f"input_blocks.{b}.1.norm.weight" in sd:
                attn_levels = level + 1
        count += 1
    head_dim = 64
    return VEnhancerConfig(
        in_channels=in_ch,
        out_channels=out_ch,
        model_channels=ch,
        channel_mult=tuple(mults),
        num_res_blocks=count,
        attention_levels=attn_levels,
        head_dim=head_dim,
        context_dim=context,
        temporal_heads=max(1, temporal_inner // head_dim),
        control=any(k.startswith("VideoControlNet.") for k in sd),
    )


def check_keys(sd: dict[str, torch.Tensor], model: torch.nn.Module, name: str = "checkpoint") -> None:
    """Strict check: raise CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    want = {official_key(k): v.shape for k, v in model.state_dict().items()}
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(want[k])}" for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k])]
    if missing or unexpected or shapes:

        def listing(title, items):
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            return f"{title} ({len(items)}): {', '.join(items[:8])}{more}" if items else ""

        parts = [p for p in (listing("missing keys", missing), listing("unexpected keys", unexpected), listing("shape mismatches", shapes)) if p]
        raise CheckpointError(
            f"{name}: does not match the VEnhancer network; " + "; ".join(parts) + ". Use the official venhancer_paper.pt / "
            "venhancer_v2.pt or an unmodified safetensors conversion (keys without prefix)"
        )


def load_venhancer(path: str, dtype: torch.dtype = torch.float16, config: VEnhancerConfig | None = None) -> VEnhancerUNet:
    """Read, check and load a checkpoint into a CPU network in ``dtype`` (eval mode, no grad)."""
    sd, meta = read_state_dict(path)
    cfg = config or infer_config(sd, meta)
    with torch.device("meta"):
        model = VEnhancerUNet(cfg)
    check_keys(sd, model, os.path.basename(path))
    for k in list(sd):  # convert one tensor at a time (peak: the file's mapping plus the new weights)
        sd[k] = sd[k].to(dtype=dtype, copy=True).contiguous()
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def save_venhancer(model: VEnhancerUNet, path: str, dtype: torch.dtype | None = None) -> None:
    """Write a safetensors checkpoint with the config in its metadata (small test models, conversions)."""
    from safetensors.torch import save_file

    sd = {official_key(k): (v.to(dtype) if dtype else v).contiguous() for k, v in model.state_dict().items()}
    cfg = asdict(model.cfg)
    cfg["channel_mult"] = list(cfg["channel_mult"])
    save_file(sd, path, metadata={"venhancer_config": json.dumps(cfg)})


__all__ = ["OFFICIAL_CONFIG", "CheckpointError", "check_keys", "infer_config", "load_venhancer", "read_state_dict", "save_venhancer"]
