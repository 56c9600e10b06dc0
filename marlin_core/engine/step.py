"""One decode step of a Qwen3.5-style model: the model's own arithmetic without its per-token overhead.

Why: on a CPU (and on a GPU before CUDA graphs) a step's cost is mostly the number of operators dispatched, not
the arithmetic: transformers' generic code runs ~540 of them per step on the tests' 4-layer model, 97 per
gated-delta-net layer alone (its PyTorch fallback pads, transposes, casts and loops over a sequence of length 1).
:class:`Stepper` runs the same formulas over the model's own weights with only the operators that compute
something, so that the result is bit for bit the model's (greedy tokens and log-probs equal ``generate``'s; tested
in float32 and bfloat16):

- every operator whose result depends on the shape or memory layout of its input (SiLU, sigmoid and softplus
  take a scalar path for a vector's tail; reductions sum in a layout-dependent order) sees the tensor the model
  gives it; what is changed is only exact: casts and copies that do not change a value are skipped, states are
  updated in place, constants (``1 + weight``, ``-exp(A_log)``) are computed once, ``q`` and ``k`` share one
  normalisation (on the CPU: row-wise reductions there sum each row alike whatever the row count) and one rotary
  pass, a grouped head broadcasts instead of being repeated, ``rotate_half(x) * sin`` is
  ``swap(x) * (sin with its first half negated)``, and the causal conv is a chain of fused multiply-adds where
  that is the conv kernel's result on this machine (:func:`_conv_columns` checks it at load);
- rotary cos/sin of a request are computed once for all its steps (:meth:`Stepper.request_rotary`, used by
  :class:`marlin_core.engine.decode.EagerStep`), with the model's own rotary module;
- layers or parts this module does not reproduce exactly (a kernel package in place of the PyTorch fallback,
  another layer class, accelerate hooks, a non-default RoPE, a gated delta net off the CPU) run through the
  model's own modules instead.

:mod:`marlin_core.engine.graphs` captures :meth:`Stepper.logits` in CUDA graphs (rotary from device positions).
Longer than 400 lines: each layer's arithmetic sits next to the checks that say when it is the model's exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FULL", "LINEAR", "Stepper", "language_parts"]

FULL, LINEAR = "full_attention", "linear_attention"
# The modeling module whose classes this step reproduces (transformers 5.24, models/qwen3_5).
QWEN3_5 = "transformers.models.qwen3_5.modeling_qwen3_5"


def language_parts(model):
    """``(language model, lm head)`` of a Qwen3.5-style model (the video model, or the text-only one), or None when
    the layers are not the expected kind."""
    inner = getattr(model, "model", None)
    lm, head = getattr(inner, "language_model", inner), getattr(model, "lm_head", None)
    if lm is None or head is None or not hasattr(lm, "layers") or not hasattr(lm, "rotary_emb"):
        return None
    types = list(getattr(lm.config, "layer_types", []) or [])
    layers = list(lm.layers[: lm.config.num_hidden_layers])
    if len(types) != len(layers) or not all(
        (kind == LINEAR and hasattr(layer, "linear_attn")) or (kind == FULL and hasattr(layer, "self_attn"))
        for kind, layer in zip(types, layers)
    ):
        return None
    return lm, head


# ---------------------------------------------------------------------------------------------- which parts are lean

def _is(module, name: str) -> bool:
    """``module`` is exactly ``QWEN3_5.name`` (not a subclass, not wrapped by accelerate or a kernel hub)."""
    return (type(module).__module__ == QWEN3_5 and type(module).__name__ == name
            and not hasattr(module, "_hf_hook"))


def _plain(module, kind: type) -> bool:
    return type(module) is kind and not hasattr(module, "_hf_hook")


def _torch_fallback(module) -> bool:
    """The gated-delta-net single-token kernels of ``module``'s modeling module are transformers' PyTorch ones."""
    from .kernels import TORCH_FALLBACK, _implementation

    modeling = sys.modules.get(type(module).__module__)
    return all(_implementation(getattr(modeling, name, None)) == TORCH_FALLBACK
               for name in ("causal_conv1d_update", "torch_recurrent_gated_delta_rule"))


def _silu(activation) -> bool:
    return type(activation).__name__ == "SiLUActivation" or isinstance(activation, nn.SiLU)


def _norm_plan(norm) -> tuple | None:
    if not _is(norm, "Qwen3_5RMSNorm"):
        return None
    return (1.0 + norm.weight.float(), norm.eps)


def _mlp_plan(mlp) -> tuple | None:
    if not (_is(mlp, "Qwen3_5MLP") and _silu(mlp.act_fn)
            and all(_plain(p, nn.Linear) and p.bias is None for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))):
        return None
    return (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)


@dataclass
class DeltaNetPlan:
    """A gated-delta-net layer's weights and constants for the single-token update."""

    qkv: torch.Tensor
    z: torch.Tensor
    b: torch.Tensor
    a: torch.Tensor
    conv: torch.Tensor
    out: torch.Tensor
    neg_a: torch.Tensor  # -exp(A_log) in float32, as the model computes it every step
    dt_bias: torch.Tensor  # float32
    norm_weight: torch.Tensor
    norm_eps: float
    key_heads: int
    value_heads: int
    key_dim: int
    value_dim: int
    kernel: int
    conv_columns: list | None = None  # the conv weight's columns in float32, where the FMA chain is the kernel's


def _conv_columns(weight: torch.Tensor) -> list | None:
    """The depthwise conv weight ``(channels, 1, kernel)`` as float32 columns, if a chain of fused multiply-adds
    over them (:func:`causal_conv`) gives the conv kernel's result bit for bit on this machine, else None.

    Why: ``F.conv1d`` costs ~50 us per call on a CPU for a one-column output (oneDNN's primitive setup), more
    than the rest of a gated-delta-net step's arithmetic. oneDNN's depthwise kernel accumulates the kernel taps in
    order with fused multiply-adds in float32; ``torch.addcmul`` on a strided tensor runs PyTorch's scalar loop,
    which this build compiles to the same fused multiply-add. Checked here on random windows of the layer's width,
    so that a build or CPU where either differs keeps ``F.conv1d``.
    """
    columns = [weight[:, 0, j].float().contiguous() for j in range(weight.shape[-1])]
    generator = torch.Generator(device=weight.device).manual_seed(0)
    window = torch.randn((3, weight.shape[0], weight.shape[-1] + 1), generator=generator, device=weight.device)
    window = (window * 4).to(weight.dtype)
    with torch.inference_mode():
        expected = F.conv1d(window, weight, None, padding=0, groups=weight.shape[0])[:, :, -1:]
        ours = causal_conv(window, columns)
    return columns if torch.equal(ours, expected) and len(columns) > 1 else None


def causal_conv(window: torch.Tensor, columns: list) -> torch.Tensor:
    """The last output column of a depthwise conv over ``window`` ``(batch, channels, kernel + 1)``, ``(batch,
    channels, 1)``, laid out as ``F.conv1d(...)[:, :, -1:]`` is (every other element of a ``(batch, channels, 2)``
    tensor): the SiLU that follows takes the same code path as the model's (a strided input: its scalar loop)."""
    x = window if window.dtype == torch.float32 else window.float()
    last = len(columns)
    total = x[:, :, 1] * columns[0]
    out = torch.empty((x.shape[0], x.shape[1], 2), dtype=window.dtype, device=window.device)[:, :, 1:]
    for j in range(1, last):
        if j < last - 1 or window.dtype != torch.float32:
            total = torch.addcmul(total, x[:, :, 1 + j], columns[j])
        else:
            torch.addcmul(total, x[:, :, 1 + j], columns[j], out=out[:, :, 0])
    if window.dtype != torch.float32:
        out[:, :, 0].copy_(total)
    return out


def _delta_net_plan(net) -> DeltaNetPlan | None:
    linears = (net.in_proj_qkv, net.in_proj_z, net.in_proj_b, net.in_proj_a, net.out_proj)
    if not (_is(net, "Qwen3_5GatedDeltaNet") and _torch_fallback(net) and net.activation == "silu"
            and all(_plain(p, nn.Linear) and p.bias is None for p in linears)
            and _plain(net.conv1d, nn.Conv1d) and net.conv1d.bias is None
            and _is(net.norm, "Qwen3_5RMSNormGated") and net.norm.activation == "silu"
            and net.num_v_heads % net.num_k_heads == 0):
        return None
    return DeltaNetPlan(
        net.in_proj_qkv.weight, net.in_proj_z.weight, net.in_proj_b.weight, net.in_proj_a.weight, net.conv1d.weight,
        net.out_proj.weight, -net.A_log.float().exp(), net.dt_bias.float(), net.norm.weight,
        net.norm.variance_epsilon, net.num_k_heads, net.num_v_heads, net.head_k_dim, net.head_v_dim,
        net.conv_kernel_size, _conv_columns(net.conv1d.weight))


@dataclass
class AttentionPlan:
    """A full-attention layer's weights, with the q and k norms' ``1 + weight`` stacked per head."""

    module: nn.Module
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    o: torch.Tensor
    qk_norm: torch.Tensor  # (heads + kv heads, head dim) float32
    q_norm: torch.Tensor  # (head dim,) float32
    k_norm: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    interface: Callable


def _attention_plan(attention, config) -> AttentionPlan | None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.qwen3_5.modeling_qwen3_5 import eager_attention_forward

    linears = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
    if not (_is(attention, "Qwen3_5Attention") and config._attn_implementation in ("sdpa", "eager")
            and all(_plain(p, nn.Linear) and p.bias is None for p in linears)
            and _is(attention.q_norm, "Qwen3_5RMSNorm") and _is(attention.k_norm, "Qwen3_5RMSNorm")
            and attention.q_norm.eps == attention.k_norm.eps and not attention.training):
        return None
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, attention.head_dim
    q_norm, k_norm = 1.0 + attention.q_norm.weight.float(), 1.0 + attention.k_norm.weight.float()
    stacked = torch.cat([q_norm.expand(heads, dim), k_norm.expand(kv_heads, dim)])
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)
    return AttentionPlan(attention, attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight,
                         attention.o_proj.weight, stacked, q_norm, k_norm, attention.q_norm.eps, heads, kv_heads, dim,
                         interface)


@dataclass
class LayerPlan:
    """One decoder layer: its lean parts (None: run the model's module for the whole layer)."""

    kind: str
    module: nn.Module
    input_norm: tuple | None
    post_norm: tuple | None
    mixer: DeltaNetPlan | AttentionPlan | None
    mlp: tuple | None

    @property
    def lean(self) -> bool:
        return None not in (self.input_norm, self.post_norm, self.mixer, self.mlp)


# ---------------------------------------------------------------------------------------------- the step

def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3_5RMSNorm with ``scale = 1 + weight`` (float32): ``x * rsqrt(mean(x^2) + eps) * scale`` in float32,
    back to ``x``'s dtype."""
    y = x if x.dtype == torch.float32 else x.float()
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
    y = y * scale
    return y if y.dtype == x.dtype else y.to(x.dtype)


class Stepper:
    """One decode step of a Qwen3.5-style model over its own weights (see the module docstring).

    Attributes:
        lm, head: the language model and its head (the head is called as a module: hooks on it see every step).
        layer_types: the text config's ``layer_types``.
        plans: per decoder layer, what runs lean.
    """

    def __init__(self, model):
        parts = language_parts(model)
        if parts is None:
            raise ValueError(f"{type(model).__name__}: not a Qwen3.5-style model")
        self.lm, self.head = parts
        self.dtype = self.lm.embed_tokens.weight.dtype
        # On the CPU a row-wise reduction sums each row alike whatever the number of rows (serial per row), so q
        # and k may share one normalisation; a GPU's reduction kernels choose their summation tree from the shape.
        self.stacked_rows = self.lm.embed_tokens.weight.device.type == "cpu"
        self.layer_types = list(self.lm.config.layer_types)
        self.plans = [self._plan(layer, kind) for layer, kind in
                      zip(self.lm.layers[: self.lm.config.num_hidden_layers], self.layer_types)]
        self.final_norm = _norm_plan(self.lm.norm)
        embedding = self.lm.embed_tokens
        self.embedding = embedding if _plain(embedding, nn.Embedding) and embedding.max_norm is None else None
        rotary = self.lm.rotary_emb
        # rotary cos/sin for a whole request at once: only where they do not depend on the largest position
        self.table_rotary = _is(rotary, "Qwen3_5TextRotaryEmbedding") and rotary.rope_type == "default"
        self.rotary_dim = int(rotary.inv_freq.shape[0]) * 2

    def _plan(self, layer, kind: str) -> LayerPlan:
        if not _is(layer, "Qwen3_5DecoderLayer"):
            return LayerPlan(kind, layer, None, None, None, None)
        if kind == LINEAR:  # elsewhere the model's module (fla's kernels on a GPU)
            mixer = _delta_net_plan(layer.linear_attn) if self.stacked_rows else None
        else:
            mixer = _attention_plan(layer.self_attn, self.lm.config)
        return LayerPlan(kind, layer, _norm_plan(layer.input_layernorm), _norm_plan(layer.post_attention_layernorm),
                         mixer, _mlp_plan(layer.mlp))

    def describe(self) -> str:
        """How many decoder layers run lean, e.g. ``"lean step (24/24 layers)"``."""
        return f"lean step ({sum(p.lean for p in self.plans)}/{len(self.plans)} layers)"

    # ------------------------------------------------------------------ rotary

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's rotary ``(cos, sin)`` ``(batch, tokens, rotary dim)`` for M-RoPE ``positions`` ``(3, batch,
        tokens)`` (the model's own module: the same values as in its forward)."""
        dummy = torch.empty((), dtype=self.dtype, device=positions.device)
        return self.lm.rotary_emb(dummy, positions)

    def step_rotary(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple:
        """``(cos, sin)`` of one step ``(batch, 1, rotary dim)`` -> what :meth:`logits` takes: those, plus cos and
        sin with its first half negated, both ``(batch, 1, 1, rotary dim)``."""
        half = self.rotary_dim // 2
        signed = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        return cos, sin, cos[:, None], signed[:, None]

    def request_rotary(self, positions: torch.Tensor, steps: int) -> list[tuple] | None:
        """Per-step rotary of a request whose M-RoPE ``positions`` ``(3, batch, 1)`` advance by one per step, for
        ``steps`` steps; None where the model's rotary cannot be tabulated (a dynamic RoPE)."""
        if not self.table_rotary:
            return None
        table = positions + torch.arange(steps, device=positions.device)
        cos, sin = self.rotary(table)
        half = self.rotary_dim // 2
        signed = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        return list(zip(cos.split(1, dim=1), sin.split(1, dim=1), cos[:, None].split(1, dim=2),
                        signed[:, None].split(1, dim=2)))

    # ------------------------------------------------------------------ one step

    def logits(self, tokens: torch.Tensor, rotary: tuple, cache, mask, text_positions: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Head output ``(batch, vocab)`` in the model's dtype for ``tokens`` ``(batch, 1)``.

        Args:
            tokens: this step's input tokens.
            rotary: :meth:`step_rotary` of this step's positions.
            cache: the request's caches (:class:`~marlin_core.engine.decode.StepCache` or a graph pool's view);
                this step's keys/values and states are written into it (it is not advanced).
            mask: the full-attention mask ``(batch, 1, 1, columns)`` or None.
            text_positions: ``(batch, 1)`` text position ids, for layers run through the model's modules.
        """
        hidden = self.embed(tokens)
        for plan in self.plans:
            if not plan.lean:
                hidden = plan.module(hidden, position_embeddings=rotary[:2], attention_mask=mask if plan.kind == FULL
                                     else None, position_ids=text_positions, cache=cache, use_cache=True)
                continue
            residual = hidden
            hidden = self.norm(hidden, plan.input_norm)
            if plan.kind == LINEAR:
                hidden = self.delta_net(hidden, plan.mixer, plan.module.linear_attn.layer_idx, cache)
            else:
                hidden = self.attention(hidden, plan.mixer, plan.module.self_attn.layer_idx, cache, mask, rotary)
            hidden = residual + hidden
            residual = hidden
            hidden = residual + self.mlp(self.norm(hidden, plan.post_norm), plan.mlp)
        hidden = self.norm(hidden, self.final_norm) if self.final_norm is not None else self.lm.norm(hidden)
        return self.head(hidden[:, -1:, :])[:, -1]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return self.lm.embed_tokens(tokens)
        return F.embedding(tokens, self.embedding.weight, self.embedding.padding_idx)

    def norm(self, x: torch.Tensor, plan: tuple) -> torch.Tensor:
        """A decoder layer's (or the final) RMS norm (:func:`rms_norm`)."""
        return rms_norm(x, *plan)

    def mlp(self, x: torch.Tensor, plan: tuple) -> torch.Tensor:
        gate, up, down = plan
        return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)

    def delta_net(self, hidden: torch.Tensor, p: DeltaNetPlan, index: int, cache) -> torch.Tensor:
        """Qwen3_5GatedDeltaNet for one token with transformers' PyTorch fallback kernels (``causal_conv1d_update``,
        ``torch_recurrent_gated_delta_rule`` with q/k l2-normalised), over the cache's conv window and recurrent
        state (both updated in place)."""
        batch, dtype = hidden.shape[0], hidden.dtype
        heads, groups = p.key_heads, p.value_heads // p.key_heads
        conv_state, state = cache.conv[index], cache.recurrent[index]
        if state.dtype != torch.float32 or not state.is_contiguous():  # not the fallback's float32 state
            return self.plans[index].module.linear_attn(hidden, cache=cache)
        qkv = F.linear(hidden, p.qkv)
        z = F.linear(hidden, p.z)
        b = F.linear(hidden, p.b)
        a = F.linear(hidden, p.a)
        # causal_conv1d_update: the window of the last `kernel` inputs and this one, one output column kept
        window = torch.cat([conv_state, qkv.transpose(1, 2)], dim=-1)
        if window.dtype != p.conv.dtype:
            window = window.to(p.conv.dtype)
        conv_state.copy_(window[:, :, -p.kernel:])
        if p.conv_columns is not None:
            mixed = F.silu(causal_conv(window, p.conv_columns))
        else:
            mixed = F.silu(F.conv1d(window, p.conv, None, padding=0, groups=window.shape[1])[:, :, -1:])
        if mixed.dtype != dtype:
            mixed = mixed.to(dtype)
        mixed = mixed.transpose(1, 2)
        key_width = heads * p.key_dim
        # the recurrent rule, in float32: q and k l2-normalised (one pass over their rows), q scaled
        qk = mixed[..., : 2 * key_width].reshape(batch, 2 * heads, p.key_dim)
        qk = qk if qk.dtype == torch.float32 else qk.float()
        qk = qk * torch.rsqrt((qk * qk).sum(dim=-1, keepdim=True) + 1e-6)
        q = (qk[:, :heads] / (p.key_dim ** 0.5)).reshape(batch, heads, 1, p.key_dim, 1)
        k = qk[:, heads:].reshape(batch, heads, 1, p.key_dim, 1)
        v = mixed[..., 2 * key_width:].reshape(batch, heads, groups, p.value_dim)
        v = v if v.dtype == torch.float32 else v.float()
        beta = b.sigmoid()
        beta = beta if beta.dtype == torch.float32 else beta.float()
        g = p.neg_a * F.softplus((a if a.dtype == torch.float32 else a.float()) + p.dt_bias)
        # a value head uses key head (head // groups): broadcast over `groups` instead of repeating q and k
        grouped = state.view(batch, heads, groups, p.key_dim, p.value_dim)
        grouped.mul_(g.reshape(batch, heads, groups, 1, 1).exp())
        kv_mem = (grouped * k).sum(dim=-2)
        delta = (v - kv_mem) * beta.reshape(batch, heads, groups, 1)
        grouped.add_(k * delta.unsqueeze(-2))
        out = (grouped * q).sum(dim=-2).reshape(batch * p.value_heads, p.value_dim)
        # Qwen3_5RMSNormGated over each value head, gated by SiLU(z), then the output projection
        if dtype != torch.float32:
            out = out.to(dtype).float()
        out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + p.norm_eps)
        out = p.norm_weight * (out if dtype == torch.float32 else out.to(dtype))
        gate = z.reshape(batch * p.value_heads, p.value_dim)
        out = out * F.silu(gate if gate.dtype == torch.float32 else gate.float())
        if out.dtype != dtype:
            out = out.to(dtype)
        return F.linear(out.reshape(batch, 1, -1), p.out)

    def attention(self, hidden: torch.Tensor, p: AttentionPlan, index: int, cache, mask, rotary: tuple
                  ) -> torch.Tensor:
        """Qwen3_5Attention for one token: gated query, q/k RMS norms and partial rotary in one pass over the
        stacked q and k heads, keys/values written into the cache, transformers' attention function."""
        batch, dtype, dim = hidden.shape[0], hidden.dtype, p.head_dim
        query, gate = torch.chunk(F.linear(hidden, p.q).view(batch, 1, -1, 2 * dim), 2, dim=-1)
        gate = gate.reshape(batch, 1, -1)
        key = F.linear(hidden, p.k).view(batch, 1, p.kv_heads, dim)
        value = F.linear(hidden, p.v).view(batch, 1, p.kv_heads, dim).transpose(1, 2)
        if self.stacked_rows:
            qk = rms_norm(torch.cat([query, key], dim=2), p.qk_norm, p.eps).transpose(1, 2)
        else:
            qk = torch.cat([rms_norm(query, p.q_norm, p.eps), rms_norm(key, p.k_norm, p.eps)], dim=2).transpose(1, 2)
        _, _, cos, signed_sin = rotary
        width = cos.shape[-1]
        turned, kept = qk[..., :width], qk[..., width:]
        half = width // 2
        swapped = torch.cat([turned[..., half:], turned[..., :half]], dim=-1)
        qk = torch.cat([turned * cos + swapped * signed_sin, kept], dim=-1)
        query, key = qk[:, : p.heads], qk[:, p.heads:]
        if batch > 1 or not self.stacked_rows:
            query = query.contiguous()
        key, value = cache.update(key, value, index)
        out, _ = p.interface(p.module, query, key, value, mask, dropout=0.0, scaling=p.module.scaling)
        out = out.reshape(batch, 1, -1)
        return F.linear(out * torch.sigmoid(gate), p.o)
