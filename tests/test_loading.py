"""from_pretrained: prefixes, dtypes, shards, pickles, missing/unexpected keys and config errors."""

from __future__ import annotations

import json
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
    if dtype == "bf16":  # write bf16 bit patterns by hand: the top 16 bits of each float32
        params = random_params(TINY, "base")
        header, blobs, offset = {}, [], 0
        for name, w in params.items():
            raw = (w.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            header["mpnet." + name] = {
                "dtype": "BF16",
                "shape": list(w.shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            blobs.append(raw)
            offset += len(raw)
        head = json.dumps(header).encode()
        (tmp_path / "model.safetensors").write_bytes(
            len(head).to_bytes(8, "little") + head + b"".join(blobs)
        )
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


def test_sharded_checkpoint(tmp_path):
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
    model = reference.from_pretrained(tmp_path)
    assert_close(
        model.state_dict()["encoder.layer.1.output.dense.weight"],
        params["encoder.layer.1.output.dense.weight"],
        atol=0,
    )


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
