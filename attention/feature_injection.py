"""Selective Feature Injection (SFI, EVS paper Sec. 3.2, Eq. 11) on self-attention q, k, v.

During DDIM inversion of the bridged latent the self-attention ``Q, K, V`` of chosen layers are
recorded at every inversion call; during the [T2V] denoising the same layers attend with

    phi_out = Attn(gamma * Q_inv + (1 - gamma) * Q, K_inv, V_inv)                      (Eq. 11)

The host (a UNet attn1 replace patch, a DiT attention override, or a test model) hands each
self-attention call's ``q, k, v`` to :meth:`FeatureInjection.qkv` together with the layer's key and
normalised depth and the call's noise level, and attends with what comes back. Recording and injection
are paired by noise level: the inversion call at ``sigma_i`` feeds the denoising call at ``sigma_i``
(nearest recorded level, so samplers that evaluate between schedule points still find a partner).

Layers are chosen by normalised depth in [0, 1]: 0 = the shallowest self-attention (UNet: full
resolution; DiT: first block), 1 = the deepest (UNet: the middle block; DiT: last block). The paper
reports two balance points (Fig. 8): deeper layers with gamma = 0.8, or shallower layers with
gamma = 0.5; gamma = 1 with every layer is the reconstruction limit.

Nothing here imports ComfyUI.
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from ..utils.checks import InputError, check_range

DEFAULT_GAMMA = 0.8  # Fig. 8: deeper layers with gamma = 0.8 is one of the two balance points
DEFAULT_DEPTH = (0.5, 1.0)  # "deeper layers" (the paper gives no exact cut; our choice)

MODES = ("off", "record", "inject")


def blend_query(q: torch.Tensor, q_inv: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 11 query: gamma * Q_inv + (1 - gamma) * Q."""
    if gamma == 1.0:
        return q_inv
    if gamma == 0.0:
        return q
    return torch.lerp(q, q_inv, gamma)


def layer_selected(depth: float, depth_min: float, depth_max: float) -> bool:
    """Whether a layer at normalised ``depth`` lies in ``[depth_min, depth_max]``."""
    return depth_min - 1e-9 <= depth <= depth_max + 1e-9


def match_batch(recorded: torch.Tensor, batch: int, name: str = "sfi") -> torch.Tensor:
    """Repeat features recorded for one stream ``[F, ...]`` to ``batch = S * F`` (streams stacked stream-major)."""
    if recorded.shape[0] == batch:
        return recorded
    if batch % recorded.shape[0]:
        raise InputError(
            name,
            f"recorded features have batch {recorded.shape[0]}, the denoising call has batch {batch}",
            "keep the same frame count and batch between inversion and denoising",
        )
    return recorded.repeat(batch // recorded.shape[0], *([1] * (recorded.ndim - 1)))


class FeatureInjection:
    """Records self-attention q, k, v during inversion and injects them (Eq. 11) during denoising.

    Args:
        gamma: blending rate of the recorded query, in [0, 1] (default 0.8).
        depth_min, depth_max: normalised depth range of the injected layers (default 0.5 - 1.0).
        store_device: where recorded tensors live (None: where they were computed, the default that keeps
            the injection free of host syncs). Memory: 3 tensors per selected layer per inversion step, each
            the size of that layer's q.

    Set :attr:`mode` to ``"record"`` for the inversion calls, ``"inject"`` for the denoising calls and
    ``"off"`` (the default) otherwise; :meth:`clear` frees the records.

    The noise level of a call may be a Python float or the host's sigma tensor (on the device). With a
    tensor nothing is read back to the host per call: the recorded levels are read once when recording
    ends (one sync per run), and the nearest level of a denoising call is found and gathered on the device.
    """

    def __init__(self, gamma: float = DEFAULT_GAMMA, depth_min: float = DEFAULT_DEPTH[0], depth_max: float = DEFAULT_DEPTH[1], store_device=None):
        check_range(gamma, "sfi_gamma", 0.0, 1.0)
        check_range(depth_min, "sfi_depth_min", 0.0, 1.0)
        check_range(depth_max, "sfi_depth_max", 0.0, 1.0)
        if depth_min > depth_max:
            raise InputError("sfi_depth_min", f"{depth_min} is above sfi_depth_max {depth_max}", "set sfi_depth_min <= sfi_depth_max")
        self.gamma = float(gamma)
        self.depth_min = float(depth_min)
        self.depth_max = float(depth_max)
        self.store_device = store_device
        self.mode = "off"
        self.sigmas: list[float] = []
        self.store: dict[tuple[Hashable, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.pending: list = []  # (layer, sigma tensor, (q, k, v)) recorded at device-side levels
        self.stacks: dict = {}  # per layer, built once per run: (q, k, v) stacked over the levels, presence
        self.level_tensors: dict = {}  # per device: the recorded levels
        self.counted = 0
        self.counted_on_device: torch.Tensor | None = None

    @property
    def injected_calls(self) -> int:
        """Denoising calls that attended with recorded features (read once, at the end of a run)."""
        extra = 0 if self.counted_on_device is None else int(self.counted_on_device)
        return self.counted + extra

    def set_mode(self, mode: str) -> None:
        """Switch between ``"off"``, ``"record"`` and ``"inject"``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.resolve()
        self.stacks.clear()
        self.level_tensors.clear()
        self.mode = mode

    def clear(self) -> None:
        """Drop every record."""
        self.sigmas.clear()
        self.store.clear()
        self.pending.clear()
        self.stacks.clear()
        self.level_tensors.clear()
        self.counted, self.counted_on_device = 0, None

    def level(self, sigma: float, create: bool) -> int | None:
        """Index of the recorded noise level for ``sigma`` (a new one when recording)."""
        sigma = float(sigma)
        if create:
            for i, s in enumerate(self.sigmas):
                if abs(s - sigma) <= 1e-6 * max(1.0, abs(s)):
                    return i
            self.sigmas.append(sigma)
            return len(self.sigmas) - 1
        if not self.sigmas:
            return None
        return min(range(len(self.sigmas)), key=lambda i: abs(self.sigmas[i] - sigma))

    def record(self, layer: Hashable, sigma, qkv) -> None:
        """Keep ``qkv`` for ``layer`` at ``sigma`` (a tensor level is filed when recording ends)."""
        dev = self.store_device
        qkv = tuple(t.detach().to(dev) if dev is not None else t.detach() for t in qkv)
        if isinstance(sigma, torch.Tensor):
            self.pending.append((layer, sigma.detach().reshape(-1)[0].clone(), qkv))  # stays on the device
        else:
            self.store[(layer, self.level(sigma, create=True))] = qkv

    def resolve(self) -> None:
        """File the records taken at tensor levels, in call order: one read of their sigmas per run."""
        if not self.pending:
            return
        values = torch.stack([sigma.double() for _, sigma, _ in self.pending]).tolist()
        for (layer, _, qkv), sigma in zip(self.pending, values):
            self.store[(layer, self.level(sigma, create=True))] = qkv
        self.pending.clear()

    def qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: Hashable, depth: float, sigma):
        """The (q, k, v) a self-attention call should attend with (unchanged unless recording/injecting here).

        ``q, k, v``: any layout with the batch first (``[B, N, C]`` or ``[B, heads, N, d]``), the same in
        both phases. ``sigma``: the call's noise level, a float or a tensor (its first element counts).
        """
        if self.mode == "off" or not layer_selected(depth, self.depth_min, self.depth_max):
            return q, k, v
        if self.mode == "record":
            self.record(layer, sigma, (q, k, v))
            return q, k, v
        self.resolve()
        if isinstance(sigma, torch.Tensor):
            return self.inject_on_device(q, k, v, layer, sigma)
        i = self.level(sigma, create=False)
        if i is None or (layer, i) not in self.store:
            return q, k, v
        q_inv, k_inv, v_inv = (match_batch(t, q.shape[0]).to(device=q.device, dtype=q.dtype) for t in self.store[(layer, i)])
        self.counted += 1
        return blend_query(q, q_inv, self.gamma), k_inv, v_inv

    def layer_stack(self, layer: Hashable):
        """``((q, k, v) stacked over the levels [L, ...], presence [L] bool, all present)`` of ``layer``, built once per run."""
        if layer not in self.stacks:
            found = [self.store.get((layer, i)) for i in range(len(self.sigmas))]
            like = next((f for f in found if f is not None), None)
            if like is None:
                self.stacks[layer] = None
            else:
                stacked = tuple(torch.stack([f[j] if f is not None else torch.zeros_like(like[j]) for f in found]) for j in range(3))
                for i, f in enumerate(found):  # the records become views of the stack (no second copy)
                    if f is not None:
                        self.store[(layer, i)] = tuple(t[i] for t in stacked)
                present = [f is not None for f in found]
                self.stacks[layer] = (stacked, torch.tensor(present, device=stacked[0].device), all(present))
        return self.stacks[layer]

    def nearest_level(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index ``[1]`` (on sigma's device) of the recorded level nearest to ``sigma``: first of equals, as :meth:`level`."""
        if sigma.device not in self.level_tensors:
            dtype = torch.float32 if sigma.device.type == "mps" else torch.float64  # MPS has no float64
            self.level_tensors[sigma.device] = torch.tensor(self.sigmas, dtype=dtype, device=sigma.device)
        levels = self.level_tensors[sigma.device]
        return (levels - sigma.reshape(-1)[:1].to(levels.dtype)).abs().argmin().reshape(1)

    def inject_on_device(self, q, k, v, layer: Hashable, sigma: torch.Tensor):
        """Eq. 11 at the level nearest to the tensor ``sigma``, chosen and gathered on the device (no sync)."""
        entry = self.layer_stack(layer) if self.sigmas else None
        if entry is None:
            return q, k, v
        stacked, present, complete = entry
        i = self.nearest_level(sigma).to(stacked[0].device)
        q_inv, k_inv, v_inv = (match_batch(t.index_select(0, i)[0], q.shape[0]).to(device=q.device, dtype=q.dtype) for t in stacked)
        out = blend_query(q, q_inv, self.gamma), k_inv, v_inv
        if complete:
            self.counted += 1
            return out
        hit = present.index_select(0, i).to(q.device)
        self.counted_on_device = hit.long() if self.counted_on_device is None else self.counted_on_device + hit.long()
        return tuple(torch.where(hit, new, old) for new, old in zip(out, (q, k, v)))


__all__ = ["DEFAULT_DEPTH", "DEFAULT_GAMMA", "FeatureInjection", "blend_query", "layer_selected", "match_batch"]
