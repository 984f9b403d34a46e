"""The ``cuda`` backend: MPNet's encoder layers, MPT's blocks and device-resident MPT decoding.

Each stack is bound at load to one model's params and owns the device copies of its weights
(uploaded on first use, freed with the model). Activations stay on the device between layers: an
encoder forward uploads x once and downloads the last hidden state once (every layer's output and
attention map too, when asked for). ``DecodeSession`` keeps the KV cache on the device as well: only
ids go in and the last position's logits come out. Requests the kernels do not cover (dropout, head
masks, activations other than exact GELU, dtypes other than float32, MPT's clip_qkv, qk_ln or a past
passed in) run the NumPy function the stack stands for. ``CUDA`` is the single operations for the
conformance op tier; they upload their arguments on every call.
"""

from __future__ import annotations

import math

import numpy as np

from .. import mpnet, mpt, ops
from ..kernels import Kernels
from . import Backend
from . import cuda_ops as dev
from .numba_stacks import checked_rows, checked_tokens, prompt_masks, supports

# ----------------------------------------------------------------------- single operations


def _up(w):
    return None if w is None else dev.to_device(w)


def linear(x, weight, bias=None):
    if x.dtype != np.float32 or weight.dtype != np.float32:
        return ops.linear(x, weight, bias)
    rows = dev.to_device(x.reshape(-1, x.shape[-1]))
    out = dev.linear(rows, _up(weight), _up(bias)).copy_to_host()
    return out.reshape(x.shape[:-1] + (weight.shape[0],))


def layer_norm(x, weight, bias, eps):
    if x.dtype != np.float32:
        return ops.layer_norm(x, weight, bias, eps)
    rows = dev.to_device(x.reshape(-1, x.shape[-1]))
    return dev.layer_norm(rows, _up(weight), _up(bias), eps).copy_to_host().reshape(x.shape)


def gelu(x):
    return ops.gelu(x) if x.dtype != np.float32 else dev.gelu(dev.to_device(x)).copy_to_host()


def attention(
    q, k, v, scale, bias=None, mask_add=None, masked=None, dropout_p=0.0, rng=None, head_mask=None
):
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
    ctx, probs = dev.attention(
        merge(q), merge(k), merge(v), (0, 0, 0), H, D, scale, want_probs=True, **extra
    )
    return ctx.copy_to_host().reshape(B, S, H, D).transpose(0, 2, 1, 3), probs.copy_to_host()


CUDA = Kernels("cuda", linear, layer_norm, gelu, attention)


def _pair(p):  # {"weight", "bias"?} -> (device weight, device bias or None)
    return dev.to_device(p["weight"]), _up(p.get("bias"))


# ---------------------------------------------------------------------------------- MPNet


class EncoderStack:
    """Twin of mpnet.encoder, the layers on the device: q/k/v as one projection, attention with the
    relative bias and the mask inside the kernel, output projection, residual and LN, GELU
    feed-forward, residual and LN."""

    def __init__(self, config, params):
        self.config, self.layers, self._device = config, params["encoder"]["layer"], None

    def _weights(self):  # uploaded once, on first use
        if self._device is None:
            self._device = []
            for p in self.layers:
                attn = p["attention"]["attn"]
                qkv = {
                    kind: np.concatenate([attn[n][kind] for n in "qkv"])
                    for kind in ("weight", "bias")
                }
                self._device.append(
                    dict(
                        qkv=_pair(qkv),
                        o=_pair(attn["o"]),
                        ln_1=_pair(p["attention"]["LayerNorm"]),
                        ffn_in=_pair(p["intermediate"]["dense"]),
                        ffn_out=_pair(p["output"]["dense"]),
                        ln_2=_pair(p["output"]["LayerNorm"]),
                    )
                )
        return self._device

    def __call__(
        self, x, position_bias, mask_bias, head_masks, rng, per_layer=True
    ):  # as mpnet.encoder
        c = self.config
        if (
            c.hidden_act != "gelu"
            or x.dtype != np.float32
            or rng is not None
            or any(m is not None for m in head_masks)
        ):
            return mpnet.encoder(self.layers, c, x, position_bias, mask_bias, head_masks, rng)
        B, S, C = x.shape
        H, D, eps = c.num_attention_heads, c.head_size, c.layer_norm_eps
        h = dev.to_device(x.reshape(B * S, C))
        bias, mask = (
            dev.to_device(position_bias),
            dev.to_device(mask_bias[:, 0]),
        )  # [H, S, S], [B, 1|S, S]
        hidden_states, attentions = [x], []
        for w in self._weights():
            qkv = dev.linear(h, *w["qkv"]).reshape(B, S, 3 * C)
            ctx, probs = dev.attention(
                qkv,
                qkv,
                qkv,
                (0, C, 2 * C),
                H,
                D,
                1 / math.sqrt(D),
                bias=bias,
                mask_add=mask,
                want_probs=per_layer,
            )
            a = dev.linear(ctx.reshape(B * S, C), *w["o"])
            h1 = dev.layer_norm(dev.add(a, h), *w["ln_1"], eps)
            f = dev.linear(dev.gelu(dev.linear(h1, *w["ffn_in"])), *w["ffn_out"])
            h = dev.layer_norm(dev.add(f, h1), *w["ln_2"], eps)
            if per_layer:
                hidden_states.append(h.copy_to_host().reshape(B, S, C))
                attentions.append(probs.copy_to_host())
        out = h.copy_to_host().reshape(B, S, C)
        return (out, hidden_states, attentions) if per_layer else (out, None, None)


# ------------------------------------------------------------------------------------ MPT


def _block(w, eps, x, attend):  # [N, C] on the device -> [N, C]; the same steps as mpt.block
    h = dev.layer_norm(x, *w["norm_1"], eps)
    ctx = attend(dev.linear(h, *w["Wqkv"]))
    x = dev.add(x, dev.linear(ctx, *w["out_proj"]))
    h = dev.gelu(dev.linear(dev.layer_norm(x, *w["norm_2"], eps), *w["up_proj"]))
    return dev.add(x, dev.linear(h, *w["down_proj"]))


class DecoderStack:
    """Twin of mpt.decoder, the blocks on the device (and of mpt.lm_logits, the head on the
    device)."""

    def __init__(self, config, features, params, weight_storage):
        self.config, self.features, self.params, self._device = config, features, params, None

    def weights(self):  # uploaded once, on first use
        if self._device is None:
            p = self.params
            blocks = [
                dict(
                    norm_1=_pair(b["norm_1"]),
                    Wqkv=_pair(b["attn"]["Wqkv"]),
                    out_proj=_pair(b["attn"]["out_proj"]),
                    norm_2=_pair(b["norm_2"]),
                    up_proj=_pair(b["ffn"]["up_proj"]),
                    down_proj=_pair(b["ffn"]["down_proj"]),
                )
                for b in p["blocks"]
            ]
            head = p["wte"] if self.config.tie_word_embeddings else p["lm_head"]
            self._device = dict(
                blocks=blocks,
                wte=dev.to_device(p["wte"]["weight"]),
                head=dev.to_device(head["weight"]),
                norm_f=_pair(p["norm_f"]),
            )
        return self._device

    def embed(self, ids):  # [...] -> [..., C]
        return mpt.embed(self.params["wte"]["weight"], ids)

    def __call__(self, x, past, masked, bias, rng, per_layer=True):  # as mpt.decoder
        c, f = self.config, self.features
        if (
            x.dtype != np.float32
            or (rng is not None and (f.resid_pdrop or c.attn_pdrop))
            or f.clip_qkv is not None
            or f.qk_ln
            or past[0] is not None
        ):
            return mpt.decoder(self.params["blocks"], c, f, x, past, masked, bias, rng)
        B, S, C = x.shape
        H, D = c.n_heads, c.head_size
        masked_d = dev.to_device(np.ascontiguousarray(masked[:, 0]), np.uint8)  # [B, S, K]
        bias_d = None if bias is None else dev.to_device(np.ascontiguousarray(bias))  # [H, 1|S, K]
        hidden_states, attentions, presents = [], [], []

        def attend(qkv):  # [B*S, 3C] -> [B*S, C]
            qkv3 = qkv.reshape(B, S, 3 * C)
            ctx, probs = dev.attention(
                qkv3,
                qkv3,
                qkv3,
                (0, C, 2 * C),
                H,
                D,
                mpt.softmax_scale(c),
                bias=bias_d,
                masked=masked_d,
                want_probs=per_layer,
            )
            k, v = (
                t.reshape(B, S, H, D).transpose(0, 2, 1, 3)
                for t in np.split(qkv3.copy_to_host(), 3, -1)[1:]
            )
            presents.append((np.ascontiguousarray(k), np.ascontiguousarray(v)))
            if per_layer:
                attentions.append(probs.copy_to_host())
            return ctx.reshape(B * S, C)

        h = dev.to_device(x.reshape(B * S, C))
        for w in self.weights()["blocks"]:
            if per_layer:
                hidden_states.append(h.copy_to_host().reshape(B, S, C))
            h = _block(w, c.layer_norm_epsilon, h, attend)
        return h.copy_to_host().reshape(B, S, C), presents, hidden_states, attentions

    def lm_logits(self, x, logit_scale=None):  # [..., C] -> [..., V]
        if x.dtype != np.float32:
            return mpt.lm_logits(
                x,
                self.params["wte" if self.config.tie_word_embeddings else "lm_head"]["weight"],
                logit_scale,
            )
        rows = dev.to_device(x.reshape(-1, x.shape[-1]))
        logits = (
            dev.linear(rows, self.weights()["head"]).copy_to_host().reshape(x.shape[:-1] + (-1,))
        )
        return mpt.scale_logits(logits, logit_scale)

    def decode_session(self, batch, total_len):
        return (
            DecodeSession(self, batch, total_len) if supports(self.config, self.features) else None
        )


class DecodeSession:
    """MPT decoding with everything on the device (hf feature set; see numba_stacks.supports), over
    the stack's device weights. The prompt runs ``_block``; each layer of ``step`` is the same block
    in five launches; tests/cuda/test_cuda_models.py holds generation to the NumPy path."""

    def __init__(self, stack, batch, total_len):
        c = stack.config
        self.c, self.features, self.w = c, stack.features, stack.weights()
        H, D, L = c.n_heads, c.head_size, c.n_layers
        self.kt = dev.empty((L, batch, H, D, total_len))
        self.v = dev.empty((L, batch, H, total_len, D))
        self.key_ok = dev.to_device(np.zeros((batch, total_len), np.uint8), np.uint8)
        self.slopes = dev.to_device(mpt.alibi_slopes(H, stack.features.alibi_bias_max))
        self.scale = mpt.softmax_scale(c)
        self.length, self.total_len, self.batch, self.ws = 0, total_len, batch, None
        self.spare = None  # reorder's second cache, allocated at its first call

    def _logits(self, last):  # [B, C] on the device -> [B, V] on the host
        h = dev.layer_norm(last, *self.w["norm_f"], self.c.layer_norm_epsilon)
        return dev.linear(h, self.w["wte"]).copy_to_host()

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
        x = dev.embed(dev.to_device(ids.reshape(-1), np.int64), self.w["wte"])  # [B*S, C]
        for i, w in enumerate(self.w["blocks"]):

            def attend(qkv, i=i):
                qkv3 = qkv.reshape(B, S, 3 * C)
                dev.cache_write(qkv3, self.kt[i], self.v[i], 0)
                ctx, _ = dev.attention(
                    qkv3, qkv3, qkv3, (0, C, 2 * C), H, D, self.scale, bias=bias, masked=masked
                )
                return ctx.reshape(B * S, C)

            x = _block(w, c.layer_norm_epsilon, x, attend)
        self.length = S
        last = dev.to_device(x.copy_to_host().reshape(B, S, C)[:, -1])
        return self._logits(last)

    def extend(self, ids, mask=None, last=None):  # [B, n] host ids -> logits [B, last or n, V]
        """Several tokens after those cached (prompt lookup's guesses): the ones whose logits are
        wanted are run one step each (an empty cache takes the others as a prompt), so the
        device computes what it would token by token; the guesses all cost a step."""
        n = ids.shape[1]
        last = last or n
        head = n - last + 1 if self.length == 0 else 0  # run as a prompt
        mask = np.ones(ids.shape, np.int64) if mask is None else np.asarray(mask)
        if not np.all(mask[:, head:] == 1):
            raise ValueError("the cuda session takes padding only in a prompt (an empty cache)")
        out = [self.prefill(ids[:, :head], mask[:, :head])] if head else []
        out += [self.step(ids[:, i]) for i in range(head, n)]
        return np.stack(out, axis=1)

    def rewind(self, length):
        """Forgets every cached position from ``length`` on (a step overwrites them)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind a cache of {self.length} positions to {length}")
        self.length = length

    def cache(self):  # -> L (key, value) pairs [B, H, length, D] on the host: past_key_values
        """The cached positions' keys and values, copied to the host (keys back from the [D, T]
        layout the device keeps them in)."""
        t, kt, v = self.length, self.kt.copy_to_host(), self.v.copy_to_host()
        return tuple(
            (np.ascontiguousarray(kt[i, ..., :t].swapaxes(-1, -2)), v[i, :, :, :t].copy())
            for i in range(len(kt))
        )

    def load(self, past, key_mask, ids=None):  # L pairs [B, H, P, D], [B, P] -> a cache of P
        """Starts from a given cache (generate(past_key_values=)), uploaded: its keys and values
        (keys to the [D, T] layout), and which keys are real."""
        P = past[0][0].shape[2]
        kt, v = np.zeros(self.kt.shape, np.float32), np.zeros(self.v.shape, np.float32)
        for i, (key, value) in enumerate(past):
            kt[i, ..., :P] = np.swapaxes(key, -1, -2)
            v[i, :, :, :P] = value
        key_ok = np.zeros((self.batch, self.total_len), np.uint8)
        key_ok[:, :P] = np.asarray(key_mask) == 1
        self.kt, self.v = dev.to_device(kt), dev.to_device(v)
        self.key_ok = dev.to_device(key_ok, np.uint8)
        self.length = P

    def reorder(self, rows):  # [B] host row indices: row i goes on from row rows[i] (beam search)
        """Copies the cache rows after beam search's choice: gathered into a second buffer of
        each, which becomes the cache, the first kept for the next reorder (twice the cache's
        memory, no copy back). Which keys are real stays each row's own, as upstream keeps each
        row's attention mask (ModelSession.reorder)."""
        rows = checked_rows(rows, self.batch)
        if self.spare is None:
            self.spare = (dev.empty(self.kt.shape), dev.empty(self.v.shape))
        on_device = dev.to_device(rows.astype(np.int64), np.int64)
        kt, v = self.spare
        dev.gather_rows(self.kt, on_device, kt)  # the batch is axis 1: [L, B, H, D, T]
        dev.gather_rows(self.v, on_device, v)
        self.spare = (self.kt, self.v)
        self.kt, self.v = kt, v

    def _workspace(self, B):
        """Step buffers, allocated once: a decode step then allocates nothing on the device."""
        c = self.c
        C, W, V = c.d_model, self.w["blocks"][0]["up_proj"][0].shape[0], c.vocab_size
        shapes = dict(
            x=(B, C),
            h=(B, C),
            qkv=(B, 3 * C),
            ctx=(B, C),
            proj=(B, C),
            up=(B, W),
            act=(B, W),
            logits=(B, V),
        )
        self.ws = {name: dev.empty(shape) for name, shape in shapes.items()}
        self.ids = dev.empty((B,), np.int64)

    def step(self, token):  # [B] host ids -> logits [B, V]
        c, t = self.c, self.length
        token = checked_tokens(
            token, self.batch, c.vocab_size, t, self.total_len, ndim=1
        )  # the device embeds it
        B, eps = token.shape[0], c.layer_norm_epsilon
        if self.ws is None:
            self._workspace(B)
        ws = self.ws
        dev.set_column(self.key_ok, t, 1)
        self.ids.copy_to_device(np.ascontiguousarray(token, np.int64))
        x = dev.embed(self.ids, self.w["wte"], out=ws["x"])  # [B, C]
        # five launches a layer: norms, GELU and residuals ride in the matvecs, the cache write
        # in the attention
        for i, w in enumerate(self.w["blocks"]):
            qkv = dev.fused_linear(x, *w["Wqkv"], ln=w["norm_1"], eps=eps, out=ws["qkv"])
            ctx = dev.decode_attention(
                qkv,
                self.kt[i],
                self.v[i],
                t + 1,
                self.scale,
                self.slopes,
                self.key_ok,
                out=ws["ctx"],
            )
            x = dev.fused_linear(ctx, *w["out_proj"], resid=x, out=ws["proj"])
            act = dev.fused_linear(
                x, *w["up_proj"], ln=w["norm_2"], eps=eps, gelu=True, out=ws["act"]
            )
            x = dev.fused_linear(
                act, *w["down_proj"], resid=x, out=ws["x"] if x is ws["proj"] else ws["proj"]
            )
        self.length = t + 1
        logits = dev.fused_linear(x, self.w["wte"], ln=self.w["norm_f"], eps=eps, out=ws["logits"])
        return logits.copy_to_host()


CUDA_BACKEND = Backend("cuda", CUDA, mpnet_encoder=EncoderStack, mpt_decoder=DecoderStack)
