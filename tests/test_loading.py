"""from_pretrained: prefixes, dtypes, shards, pickles, missing/unexpected keys and config errors."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from conftest import TINY, assert_close, random_params
from safetensors.numpy import save_file

import reference
from reference.checkpoint import CheckpointError, read_safetensors


def write_checkpoint(
    directory, task="masked-lm", prefix="mpnet.", dtype=np.float32, config=None, drop=(), extra=None
):
    config = {**TINY, **(config or {})}
    params = random_params(config, task)
    weights = {}
    for name, w in params.items():
        if name in drop:
            continue
        is_head = name.startswith(("lm_head.", "classifier.", "qa_outputs."))
        weights[name if is_head else prefix + name] = w.astype(dtype)
    weights.update(extra or {})
    save_file(weights, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    return params


def save_bf16(path, weights):
    """A safetensors file of bf16 tensors, written by hand (NumPy has no bfloat16): the top 16
    bits of each float32, truncated."""
    header, blobs, offset = {}, [], 0
    for name, w in weights.items():
        raw = (w.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(w.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def ids():
    return np.array([[0, 5, 9, 12, 2, 1, 1]]), np.array([[1, 1, 1, 1, 1, 0, 0]])


@pytest.mark.parametrize("prefix", ["mpnet.", ""])
def test_checkpoints_with_and_without_base_prefix_give_the_same_model(tmp_path, prefix):
    params = write_checkpoint(tmp_path, prefix=prefix)
    model = reference.from_pretrained(tmp_path, task="masked-lm")
    direct = reference.build({**TINY}, params, task="masked-lm")
    x, m = ids()
    assert_close(
        model(x, attention_mask=m).logits, direct(x, attention_mask=m).logits, atol=0, what="logits"
    )


def test_tied_decoder_copies_and_position_id_buffer_are_accepted(tmp_path):
    params = write_checkpoint(
        tmp_path,
        extra={
            "mpnet.embeddings.position_ids": np.arange(24)[None],
            "lm_head.decoder.bias": random_params(TINY, "masked-lm")["lm_head.bias"],
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is unexpected
        model = reference.from_pretrained(tmp_path, task="masked-lm")
    assert_close(model.state_dict()["lm_head.bias"], params["lm_head.bias"], atol=0)


@pytest.mark.parametrize("dtype", [np.float16, "bf16"])
def test_half_precision_checkpoints_are_widened(tmp_path, dtype):
    if dtype == "bf16":
        params = random_params(TINY, "base")
        save_bf16(tmp_path / "model.safetensors", {"mpnet." + k: w for k, w in params.items()})
        (tmp_path / "config.json").write_text(json.dumps(TINY))
        tol = 2.0**-7
    else:
        params = write_checkpoint(tmp_path, task="base", dtype=dtype)
        tol = 2.0**-10
    model = reference.from_pretrained(tmp_path)
    w = model.state_dict()["encoder.layer.0.attention.attn.q.weight"]
    assert w.dtype == np.float32
    assert_close(
        w,
        params["encoder.layer.0.attention.attn.q.weight"],
        atol=1e-3,
        rtol=tol,
        what="widened weight",
    )


@pytest.mark.parametrize("backend", ["numpy", "numba"])  # numba: matrices read from each shard
def test_sharded_checkpoint(tmp_path, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    params = write_checkpoint(tmp_path, task="base")
    whole = read_safetensors(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(whole)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: whole[k] for k in keys}, str(tmp_path / shard))
        weight_map.update({k: shard for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = reference.from_pretrained(tmp_path, backend=backend)
    state = model.state_dict()
    for name in ("encoder.layer.1.output.dense.weight", "embeddings.word_embeddings.weight"):
        assert_close(state[name], params[name], atol=0, what=name)


def test_pickle_checkpoints_are_refused_with_a_conversion_hint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="never unpickled.*safe_serialization=True"):
        reference.from_pretrained(tmp_path)


def test_missing_weights_are_listed(tmp_path):
    write_checkpoint(tmp_path, task="masked-lm", drop=("lm_head.dense.weight",))
    with pytest.raises(CheckpointError, match="missing weights.*lm_head.dense.weight"):
        reference.from_pretrained(tmp_path, task="masked-lm")


def test_unexpected_weights_warn_and_missing_pooler_is_allowed_for_base(tmp_path):
    write_checkpoint(tmp_path, task="masked-lm", drop=("pooler.dense.weight", "pooler.dense.bias"))
    with pytest.warns(UserWarning, match="unexpected weights.*lm_head"):
        model = reference.from_pretrained(tmp_path, task="base")
    x, _ = ids()
    out = model(x, return_dict=False)
    assert out[1] is None  # PT MPNetModel without a pooler keeps a None in the tuple (SPEC 1.7)


def test_shape_that_does_not_fit_the_config_is_named(tmp_path):
    write_checkpoint(tmp_path, task="base")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(
        CheckpointError,
        match=r"intermediate\.dense\.(weight|bias).*has shape .* the config implies",
    ):
        reference.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "bert"}, "model_type 'bert' is not supported"),
        ({"hidden_size": 18}, "not a multiple of num_attention_heads"),
        ({"hidden_act": "swish"}, "hidden_act 'swish' is not supported"),
        ({"num_hidden_layers": "2"}, "num_hidden_layers must be an integer, got .2."),
        (
            {"num_hidden_layers": 10**72},
            "num_hidden_layers is 1000+, more than the 10000",
        ),  # before any per-layer work
        ({"vocab_size": 2**40}, "vocab_size is 1099511627776, more than the 2147483647"),
        ({"layer_norm_eps": "1e-5"}, "layer_norm_eps must be a finite number, got '1e-5'"),
        ({"id2label": {"first": "A"}}, "id2label must map integer class ids"),
        ({"tf_legacy_loss": "yes"}, "tf_legacy_loss must be true or false"),
    ],
)
def test_bad_configs_are_refused(tmp_path, change, message):
    write_checkpoint(tmp_path, task="base")
    (tmp_path / "config.json").write_text(json.dumps({**TINY, **change}))
    with pytest.raises(ValueError, match=message) as raised:
        reference.from_pretrained(tmp_path)
    assert "config.json" in str(raised.value), "the error names the file"


def test_unknown_task_profile_and_backend(tmp_path):
    write_checkpoint(tmp_path, task="base")
    with pytest.raises(ValueError, match="unknown task 'summarise'.*accepted"):
        reference.from_pretrained(tmp_path, task="summarise")
    with pytest.raises(ValueError, match="unknown mpnet profile 'jax'.*accepted"):
        reference.from_pretrained(tmp_path, profile="jax")
    with pytest.raises(ValueError, match="unknown backend"):
        reference.from_pretrained(tmp_path, backend="tpu")


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    write_checkpoint(tmp_path, task="base")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        reference.from_pretrained(tmp_path)


@pytest.mark.parametrize("source", ["F32", "F16", "BF16"])
def test_a_deferred_matrix_reads_rows_or_all_of_it_as_a_new_array(tmp_path, source):
    from reference.checkpoint import DeferredTensor, load_deferred

    w = np.random.default_rng(0).normal(size=(12, 40)).astype(np.float32)
    path = tmp_path / "m.safetensors"
    if source == "BF16":
        save_bf16(path, {"w": w, "b": w[0]})
    else:
        save_file({"w": w.astype(source.replace("F", "float")), "b": w[0]}, str(path))
    eager = read_safetensors(path)
    calls = []
    deferred = read_safetensors(path, defer=True, on_tensor=lambda: calls.append("tensor"))
    assert isinstance(deferred["w"], DeferredTensor) and isinstance(deferred["b"], np.ndarray)
    assert len(calls) == 1 and not deferred["w"].done  # b; w counts once it has been read
    d = deferred["w"]
    assert (d.shape, d.ndim, d.size, len(d), d.dtype) == ((12, 40), 2, 480, 12, np.float32)
    for got in (np.asarray(d), d[3:7], d[5]):
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.writeable
        assert not isinstance(got, np.memmap) and not isinstance(got.base, np.memmap)
    np.testing.assert_array_equal(np.asarray(d), eager["w"])
    np.testing.assert_array_equal(d[3:7], eager["w"][3:7])
    assert d.finite and d.done and len(calls) == 2  # w was read to its last row: counted then
    wide = DeferredTensor(d.path, d.offset, d.tag, d.shape, np.float64, lambda: calls.append(0))
    assert wide[0].dtype == np.float64 and wide[1:3].shape == (2, 40) and not wide.done
    wide[10:], wide[:], wide.finish()
    assert wide.done and calls.count(0) == 1  # once, when a read first reached the last row
    tree = load_deferred({"a": [{"w": d}], "b": deferred["b"], "tied": d})
    assert isinstance(tree["a"][0]["w"], np.ndarray) and tree["b"] is deferred["b"]
    assert tree["tied"] is tree["a"][0]["w"]  # one tensor in two places: one array
    np.testing.assert_array_equal(d[[1, 3]], eager["w"][[1, 3]])  # other keys: as NumPy's
    if source == "BF16":  # the file's bits, for a bf16 storage: those of rounding the values back
        from reference.precision import to_bf16_bits

        np.testing.assert_array_equal(d.bf16_rows(2, 5), to_bf16_bits(eager["w"][2:5]))
    else:
        with pytest.raises(ValueError, match=f"bf16_rows of a {source} tensor"):
            d.bf16_rows(0, 1)
    with pytest.raises(IndexError):
        d[12]
    with open(path, "r+b") as f:  # the file cut short after it was opened
        f.truncate(d.offset + d.size * d.storage.itemsize - 8)  # inside w's last row
    with pytest.raises(CheckpointError, match="the file ended inside a tensor"):
        d[10:]


def mpt_checkpoint(tmp_path, source, task):
    """A tiny MPT directory (untied head, widths the interleaved layouts take) in F32 or BF16."""
    from test_mpt_properties import CONFIG, tiny_mpt

    config = {**CONFIG, "d_model": 64, "n_heads": 4, "vocab_size": 64, "pad_token_id": 0}
    config["tie_word_embeddings"] = task != "causal-lm"  # an LM head of its own for the LM
    weights = tiny_mpt(task, **config).state_dict()
    weights = {("" if k.startswith(("lm_head", "score")) else "transformer.") + k: v
               for k, v in weights.items()}  # fmt: skip
    path = tmp_path / f"mpt-{source}-{task}"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    if source == "BF16":
        save_bf16(path / "model.safetensors", weights)
    else:
        save_file(weights, str(path / "model.safetensors"))
    return path, config


@pytest.mark.parametrize("storage", ["fp32", "bf16", "q8"])
@pytest.mark.parametrize("source", ["F32", "BF16"])
@pytest.mark.parametrize("task", ["causal-lm", "sequence-classification"])
def test_matrices_read_from_the_file_into_the_stacks_equal_those_of_loaded_weights(
    tmp_path, storage, source, task
):
    """For the numba backend each matrix is read into its stacked layout (float32, bf16 or q8) a
    few rows at a time; the model is the one built from the whole checkpoint read into float32
    first, bit for bit. A matrix the stack does not take (the classification head) is read whole
    after the build."""
    pytest.importorskip("numba")
    from reference.checkpoint import DeferredTensor, flatten, read_weights

    path, config = mpt_checkpoint(tmp_path, source, task)
    options = dict(task=task, backend="numba", weight_storage=storage)
    model = reference.from_pretrained(path, **options)
    eager = reference.build(config, read_weights(path), **options)
    assert not any(isinstance(v, DeferredTensor) for v in flatten(model.params).values())
    x = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    out, want = model(x), eager(x)
    assert_close(out.logits, want.logits, atol=0, what=f"{storage} logits from {source}")


MEASURE_LOAD = """
import sys
import numpy as np
import reference
from reference.backends import numba_cpu, numba_stacks

numba_cpu.gelu(np.ones(8, np.float32))  # before the baseline: LLVM and the threads started


def peak():  # this process's peak RSS (getrusage's carries the parent's over exec on Linux)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


before = peak()
path, task, backend, storage = sys.argv[1:]
options = {} if storage == "-" else {"weight_storage": storage}
reference.from_pretrained(path, task=task, backend=backend, **options)
print(peak() - before)
"""
# conversion's scratch: a chunk of 2^20 weights at a time, or a layer of MPNet's, whatever the size
TEMPORARIES = 48 * 2**20


def big_checkpoint(path, family):  # -> bytes of its matrices: 17M float32 parameters either way
    rng = np.random.default_rng(0)
    d, layers, vocab = 512, 4, 8192
    if family == "mpt":
        config = dict(model_type="mpt", d_model=d, n_heads=8, n_layers=layers, vocab_size=vocab,
                      max_seq_len=64, no_bias=True)  # fmt: skip
        from test_mpt_properties import mpt_model

        shapes = mpt_model.param_shapes(mpt_model.MPTConfig.from_dict(config), "causal-lm", None)
        prefix = "transformer."
    else:
        config = dict(TINY, hidden_size=d, num_hidden_layers=layers, num_attention_heads=8,
                      intermediate_size=4 * d, vocab_size=vocab)  # fmt: skip
        from reference import mpnet_model

        shapes = mpnet_model.param_shapes(mpnet_model.MPNetConfig.from_dict(config), "base")
        prefix = "mpnet."
    weights = {prefix + k: rng.standard_normal(shape, np.float32) for k, shape in shapes.items()}
    (path / "config.json").write_text(json.dumps(config))
    save_file(weights, str(path / "model.safetensors"))
    return sum(w.size for w in weights.values() if w.ndim == 2)


@pytest.mark.parametrize(
    "family, backend, storage, weight_bytes",
    [("mpt", "numba", "fp32", 4), ("mpt", "numba", "bf16", 2), ("mpt", "numba", "q8", 1 + 4 / 32),
     ("mpnet", "numba", "-", 4), ("mpnet", "numpy", "-", 4)],
)  # fmt: skip
def test_loading_never_holds_a_second_copy_of_the_weights(
    tmp_path, family, backend, storage, weight_bytes
):
    """Peak memory while loading a float32 checkpoint of 17M parameters (67 MB) in a fresh process
    (its growth from the imports on): the weights' own bytes in their storage (67, 34 or 19 MB)
    and at most TEMPORARIES more. It was 135 MB for each, twice the float32 bytes, while the file
    was mapped into memory beside the weights read from it, and while the numba backend's stacks,
    packed or low-precision copies were made beside a float32 copy of every weight. Measured
    here (Zen 4): 68, 52 and 23 MiB for MPT, 82 (numba) and 65 (NumPy) for MPNet; at 117M MPT
    parameters, 464, 262 and 140 MiB from 896 (1.04x, 1.17x and 1.11x the storage), and for
    all-mpnet-base-v2, 418 MiB from 835 on NumPy and 438 from 751 on numba."""
    pytest.importorskip("numba")
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status"):
        pytest.skip("reads the peak RSS from /proc/self/status (Linux)")
    stored = big_checkpoint(tmp_path, family) * weight_bytes
    task = "causal-lm" if family == "mpt" else "base"
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_LOAD, str(tmp_path), task, backend, storage],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    growth = int(out.stdout.split()[-1])
    assert growth <= stored + TEMPORARIES, (
        f"loading {family} for {backend} ({storage}) grew the process by {growth / 2**20:.0f}"
        f" MiB, {growth / stored:.2f}x the {stored / 2**20:.0f} MiB its weights hold"
    )


@pytest.mark.parametrize("source", ["F32", "BF16"])
def test_deferred_weights_with_nan_or_inf_are_named_in_the_warning_and_each_counted_once(
    tmp_path, source
):
    pytest.importorskip("numba")
    from reference.checkpoint import read_safetensors_header

    path, config = mpt_checkpoint(tmp_path, "F32", "causal-lm")
    weights = read_safetensors(path / "model.safetensors")
    weights["transformer.blocks.1.ffn.up_proj.weight"][5, 7] = np.inf
    weights["transformer.blocks.0.attn.Wqkv.weight"][3, 2] = np.nan
    weights["extra.weight"] = np.zeros((2, 2), np.float32)  # unexpected: deferred, never read
    if source == "BF16":  # bf16 into bf16 storage: the file's bits, checked as bits
        save_bf16(path / "model.safetensors", weights)
    else:
        save_file(weights, str(path / "model.safetensors"))
    ticks = []
    with pytest.warns(UserWarning) as caught:
        reference.from_pretrained(
            path,
            "causal-lm",
            backend="numba",
            weight_storage="bf16",
            on_tensor=lambda: ticks.append(1),
        )
    messages = [str(w.message) for w in caught]
    want = "NaN or Inf values: ['blocks.0.attn.Wqkv.weight', 'blocks.1.ffn.up_proj.weight']"
    assert any(want in m for m in messages), messages
    assert len(ticks) == len(read_safetensors_header(path))  # a progress bar ends full


def test_the_memory_check_counts_matrices_at_the_storage_s_bytes(tmp_path, monkeypatch):
    """MPT-7B's shape (6.6G parameters: 24.8 GiB in float32, 12.4 in bf16) on a machine of 20
    GiB: refused for fp32 before anything is read, taken for bf16 (which then finds no weights
    in this config-only directory)."""
    config = dict(model_type="mpt", d_model=4096, n_heads=32, n_layers=32, vocab_size=50432,
                  max_seq_len=2048, no_bias=True)  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr("reference.loading.physical_memory", lambda: 20 * 2**30)
    with pytest.raises(CheckpointError, match=r"implies 24\.8 GiB of weights, more than .* 20\.0"):
        reference.from_pretrained(tmp_path, task="causal-lm")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        reference.from_pretrained(tmp_path, task="causal-lm", weight_storage="bf16")
    monkeypatch.setattr("reference.loading.physical_memory", lambda: 40 * 2**30)
    with pytest.raises(CheckpointError, match=r"implies 49\.5 GiB"):  # float64: 8 bytes a weight
        reference.from_pretrained(tmp_path, task="causal-lm", dtype=np.float64)


def test_options_another_family_takes_are_refused_before_anything_is_read(tmp_path, monkeypatch):
    """weight_storage and kv_cache are MPT's; an MPNet model refuses them, and an unknown value
    or option name is refused, all before a weight is read."""
    write_checkpoint(tmp_path, task="base")

    def no_reading(*args, **kwargs):
        raise AssertionError("weights were read")

    monkeypatch.setattr("reference.loading.read_weights", no_reading)
    for options in (dict(weight_storage="bf16"), dict(kv_cache="bf16")):
        name = next(iter(options))
        with pytest.raises(
            TypeError, match=f"{name} is not an option of mpnet models; they take none"
        ):
            reference.from_pretrained(tmp_path, **options)
    from test_mpt_properties import CONFIG

    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(ValueError, match=r"unknown weight_storage 'int4'; accepted: \['fp32'"):
        reference.from_pretrained(tmp_path, weight_storage="int4")
    with pytest.raises(ValueError, match="unknown kv_cache 'fp8'"):
        reference.from_pretrained(tmp_path, kv_cache="fp8")
    with pytest.raises(TypeError, match=r"cache is not an option of mpt models; they take \["):
        reference.from_pretrained(tmp_path, cache="bf16")
