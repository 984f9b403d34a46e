"""The ``cuda`` backend: the kernel set for ordinary forwards, and device-resident MPT decoding.

``CUDA`` has the signatures of reference/ops.py (NumPy arrays in and out) so every model and the
conformance suite can run on the GPU kernels; weights are uploaded once and kept on the device
(keyed by the host array), activations go up and down per call. ``DecodeSession`` is the fast path:
weights, activations and the KV cache stay on the device between layers and steps; only ids go in
and the last position's logits come out.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..kernels import Kernels
from ..mpt import alibi_slopes, softmax_scale
from . import cuda_ops as dev
from .numba_decode import checked_tokens, prompt_masks, supports

_RESIDENT: dict = {}  # id(host weight) -> (host weight, device copy); the host reference keeps the id unique


def resident(w):
    """The device copy of a weight, uploaded on first use."""
    entry = _RESIDENT.get(id(w))
    if entry is None or entry[0] is not w:
        entry = _RESIDENT[id(w)] = (w, dev.to_device(w))
    return entry[1]


def linear(x, weight, bias=None):
    if x.dtype != np.float32 or weight.dtype != np.float32:
        return ops.linear(x, weight, bias)
    rows = dev.to_device(x.reshape(-1, x.shape[-1]))
    out = dev.linear(rows, resident(weight), None if bias is None else resident(bias)).copy_to_host()
    return out.reshape(x.shape[:-1] + (weight.shape[0],))


def layer_norm(x, weight, bias, eps):
    if x.dtype != np.float32:
        return ops.layer_norm(x, weight, bias, eps)
    rows = dev.to_device(x.reshape(-1, x.shape[-1]))
    return dev.layer_norm(rows, resident(weight), None if bias is None else resident(bias), eps).copy_to_host().reshape(x.shape)


def gelu(x):
    return ops.gelu(x) if x.dtype != np.float32 else dev.gelu(dev.to_device(x)).copy_to_host()


def attention(q, k, v, scale, bias=None, mask_add=None, masked=None, dropout_p=0.0, rng=None, head_mask=None):
    if rng is not None or head_mask is not None or q.dtype != np.float32:
        return ops.attention(q, k, v, scale, bias, mask_add, masked, dropout_p, rng, head_mask)
    B, H, S, D = q.shape
    merge = lambda t: dev.to_device(t.transpose(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], H * D))  # noqa: E731
    extra = {}
    if bias is not None:  # [H, S|1, K] (relative or ALiBi), or with a leading batch axis of 1
        extra["bias"] = dev.to_device(bias if np.ndim(bias) == 3 else np.asarray(bias)[0])
    if mask_add is not None:
        extra["mask_add"] = dev.to_device(np.asarray(mask_add)[:, 0])
    if masked is not None:
        extra["masked"] = dev.to_device(np.asarray(masked)[:, 0], np.uint8)
    ctx, probs = dev.attention(merge(q), merge(k), merge(v), (0, 0, 0), H, D, scale, want_probs=True, **extra)
    return ctx.copy_to_host().reshape(B, S, H, D).transpose(0, 2, 1, 3), probs.copy_to_host()


def _qkv_block(params, prefix, kind):
    """The block that mpnet.pack_qkv made q, k and v adjacent views of, or None if they are separate."""
    q, k, v = (params[f"{prefix}{n}.{kind}"] for n in "qkv")
    block = q.base
    if block is None or not all(w.flags.c_contiguous for w in (block, q, k, v)) \
            or block.nbytes != q.nbytes + k.nbytes + v.nbytes:
        return None
    start = block.ctypes.data
    if (q.ctypes.data, k.ctypes.data, v.ctypes.data) != (start, start + q.nbytes, start + q.nbytes + k.nbytes):
        return None
    return block


def encoder_stack(params, config, x, position_bias, mask_bias):
    """MPNet's L post-LN layers with the activations kept on the device: x [B, S, C] goes up once and
    the last hidden state comes down once. The same operations as mpnet.encoder_layer, in order:
    q/k/v as one projection, attention with the relative bias and mask inside the kernel, output
    projection, residual and LN, GELU feed-forward, residual and LN. None (the caller then runs the
    layers one by one) for activations other than exact GELU, dtypes other than float32, or q/k/v
    not stored as one block."""
    if config.hidden_act != "gelu" or x.dtype != np.float32:
        return None
    B, S, C = x.shape
    H, D, eps = config.num_attention_heads, config.head_size, config.layer_norm_eps
    blocks = []
    for i in range(config.num_hidden_layers):
        pre = f"encoder.layer.{i}.attention.attn."
        w, b = _qkv_block(params, pre, "weight"), _qkv_block(params, pre, "bias")
        if w is None or b is None or w.dtype != np.float32:
            return None
        blocks.append((w, b))
    h = dev.to_device(x.reshape(B * S, C))
    bias = dev.to_device(position_bias)  # [H, S, S]
    mask = dev.to_device(mask_bias[:, 0])  # [B, 1|S, S]
    for i, (w_qkv, b_qkv) in enumerate(blocks):
        p = lambda name, i=i: resident(params[f"encoder.layer.{i}.{name}"])  # noqa: E731
        qkv = dev.linear(h, resident(w_qkv), resident(b_qkv)).reshape(B, S, 3 * C)
        ctx, _ = dev.attention(qkv, qkv, qkv, (0, C, 2 * C), H, D, 1 / math.sqrt(D), bias=bias, mask_add=mask)
        a = dev.linear(ctx.reshape(B * S, C), p("attention.attn.o.weight"), p("attention.attn.o.bias"))
        h1 = dev.layer_norm(dev.add(a, h), p("attention.LayerNorm.weight"), p("attention.LayerNorm.bias"), eps)
        f = dev.gelu(dev.linear(h1, p("intermediate.dense.weight"), p("intermediate.dense.bias")))
        f = dev.linear(f, p("output.dense.weight"), p("output.dense.bias"))
        h = dev.layer_norm(dev.add(f, h1), p("output.LayerNorm.weight"), p("output.LayerNorm.bias"), eps)
    return h.copy_to_host().reshape(B, S, C)


CUDA = Kernels("cuda", linear, layer_norm, gelu, attention, encoder_stack=encoder_stack)


class DecodeSession:
    """MPT decoding with everything on the device (hf feature set; see numba_decode.supports).

    Takes (config, params, features) like numba_decode.DecodeSession, with the prompt's masks and bias
    from numba_decode.prompt_masks. ``_block`` (the prompt) and each layer of ``step`` must equal
    mpt.block; tests/cuda/test_cuda_models.py holds generation to the NumPy path."""

    def __init__(self, config, params, features, batch, total_len):
        c = config
        self.c, self.features = c, features
        self.p = {name: resident(w) for name, w in params.items()}
        H, D, L = c.n_heads, c.head_size, c.n_layers
        self.kt = dev.empty((L, batch, H, D, total_len))
        self.v = dev.empty((L, batch, H, total_len, D))
        self.key_ok = dev.to_device(np.zeros((batch, total_len), np.uint8), np.uint8)
        self.slopes = dev.to_device(alibi_slopes(H, features.alibi_bias_max))
        self.scale = softmax_scale(c)
        self.length, self.total_len, self.batch, self.ws = 0, total_len, batch, None

    def _block(self, i, x, attend):
        p, eps = self.p, self.c.layer_norm_epsilon
        pre = f"blocks.{i}."
        h = dev.layer_norm(x, p[pre + "norm_1.weight"], p.get(pre + "norm_1.bias"), eps)
        qkv = dev.linear(h, p[pre + "attn.Wqkv.weight"], p.get(pre + "attn.Wqkv.bias"))
        ctx = attend(qkv)
        x = dev.add(x, dev.linear(ctx, p[pre + "attn.out_proj.weight"], p.get(pre + "attn.out_proj.bias")))
        h = dev.layer_norm(x, p[pre + "norm_2.weight"], p.get(pre + "norm_2.bias"), eps)
        h = dev.gelu(dev.linear(h, p[pre + "ffn.up_proj.weight"], p.get(pre + "ffn.up_proj.bias")))
        return dev.add(x, dev.linear(h, p[pre + "ffn.down_proj.weight"], p.get(pre + "ffn.down_proj.bias")))

    def _logits(self, last):  # [B, C] on the device -> [B, V] on the host
        h = dev.layer_norm(last, self.p["norm_f.weight"], self.p.get("norm_f.bias"), self.c.layer_norm_epsilon)
        return dev.linear(h, self.p["wte.weight"]).copy_to_host()

    def prefill(self, ids, mask):  # [B, S] host ids and mask -> last logits [B, V]
        c = self.c
        ids = checked_tokens(ids, self.batch, c.vocab_size, 0, self.total_len, ndim=2)
        B, S = ids.shape
        C, H, D = c.d_model, c.n_heads, c.head_size
        masked_host, key_mask, bias_host = prompt_masks(c, self.features, ids, mask)
        key_ok = np.zeros((B, self.total_len), np.uint8)
        key_ok[:, :S] = key_mask
        self.key_ok = dev.to_device(key_ok, np.uint8)
        masked = dev.to_device(np.ascontiguousarray(masked_host[:, 0]), np.uint8)
        bias = dev.to_device(np.ascontiguousarray(bias_host))  # [H, 1, S]
        x = dev.embed(dev.to_device(ids.reshape(-1), np.int64), self.p["wte.weight"])  # [B*S, C]
        for i in range(c.n_layers):
            def attend(qkv, i=i):
                qkv3 = qkv.reshape(B, S, 3 * C)
                dev.cache_write(qkv3, self.kt[i], self.v[i], 0)
                ctx, _ = dev.attention(qkv3, qkv3, qkv3, (0, C, 2 * C), H, D, self.scale, bias=bias, masked=masked)
                return ctx.reshape(B * S, C)
            x = self._block(i, x, attend)
        self.length = S
        last = dev.to_device(x.copy_to_host().reshape(B, S, C)[:, -1])
        return self._logits(last)

    def _workspace(self, B):
        """Step buffers, allocated once: a decode step then allocates nothing on the device."""
        c = self.c
        C, W, V = c.d_model, self.p["blocks.0.ffn.up_proj.weight"].shape[0], c.vocab_size
        shapes = dict(x=(B, C), h=(B, C), qkv=(B, 3 * C), ctx=(B, C), proj=(B, C), up=(B, W), act=(B, W),
                      logits=(B, V))
        self.ws = {name: dev.empty(shape) for name, shape in shapes.items()}
        self.ids = dev.empty((B,), np.int64)

    def step(self, token):  # [B] host ids -> logits [B, V]
        c, t = self.c, self.length
        token = checked_tokens(token, self.batch, c.vocab_size, t, self.total_len, ndim=1)  # the device embeds it
        B, eps, p = token.shape[0], c.layer_norm_epsilon, self.p
        if getattr(self, "ws", None) is None:
            self._workspace(B)
        ws = self.ws
        dev.set_column(self.key_ok, t, 1)
        self.ids.copy_to_device(np.ascontiguousarray(token, np.int64))
        x = dev.embed(self.ids, p["wte.weight"], out=ws["x"])  # [B, C]
        for i in range(c.n_layers):  # five launches a layer: norms, GELU and residuals ride in the matvecs,
            # the cache write in the attention
            pre = f"blocks.{i}."
            qkv = dev.fused_linear(x, p[pre + "attn.Wqkv.weight"], p.get(pre + "attn.Wqkv.bias"),
                                   ln=(p[pre + "norm_1.weight"], p.get(pre + "norm_1.bias")), eps=eps, out=ws["qkv"])
            ctx = dev.decode_attention(qkv, self.kt[i], self.v[i], t + 1, self.scale, self.slopes, self.key_ok,
                                       out=ws["ctx"])
            x = dev.fused_linear(ctx, p[pre + "attn.out_proj.weight"], p.get(pre + "attn.out_proj.bias"), resid=x,
                                 out=ws["proj"])
            act = dev.fused_linear(x, p[pre + "ffn.up_proj.weight"], p.get(pre + "ffn.up_proj.bias"),
                                   ln=(p[pre + "norm_2.weight"], p.get(pre + "norm_2.bias")), eps=eps, gelu=True,
                                   out=ws["act"])
            x = dev.fused_linear(act, p[pre + "ffn.down_proj.weight"], p.get(pre + "ffn.down_proj.bias"), resid=x,
                                 out=ws["x"] if x is ws["proj"] else ws["proj"])
        self.length = t + 1
        logits = dev.fused_linear(x, p["wte.weight"], ln=(p["norm_f.weight"], p.get("norm_f.bias")), eps=eps,
                                  out=ws["logits"])
        return logits.copy_to_host()


def open_session(config, params, features, batch, total_len):
    """The kernel set's decode_session (reference/kernels.py): a device-resident session, or None."""
    return DecodeSession(config, params, features, batch, total_len) if supports(config, features) else None
