"""``from_pretrained``: an HF model directory in, a ready model out."""

from __future__ import annotations

import os
import warnings

import numpy as np

from . import mpnet_model, mpt_model
from .backends import BACKENDS, get_backend
from .checkpoint import (
    CheckpointError,
    DeferredTensor,
    load_deferred,
    match_keys,
    read_config,
    read_generation_config,
    read_weights,
)
from .generation import GenerationMixin, generation_settings
from .profiles import get_profile

FAMILIES = {"mpnet": mpnet_model, "mpt": mpt_model}


def build(
    config_dict,
    weights,
    task="base",
    profile=None,
    dtype=np.float32,
    where="weights",
    backend="numpy",
    generation_config=None,
    **options,
):
    """A model from a config dict and HF-named arrays (any base-model prefix is accepted).
    generation_config: the checkpoint's generation_config.json as a dict, where it has one."""
    return _assemble(
        _plan(config_dict, task, profile, dtype, where, None, options, generation_config),
        weights,
        dtype,
        where,
        backend,
        options,
    )


def _plan(
    config_dict,
    task,
    profile,
    dtype,
    where,
    config_file=None,
    options=None,
    generation_file=None,
    generation_dir=None,
):
    """Everything decided from the config alone, before any weight is read: the family, the parsed
    config and the parameter shapes, with the task, the family's keyword ``options`` and the memory
    they need checked (matrices at the bytes a weight of the weight_storage asked for takes), and a
    generating model's generate() settings (from config.json and a generation_config.json: the dict
    ``generation_file``, or the file in ``generation_dir``, as transformers picks them). Config
    errors name ``config_file`` when the config came from one."""
    family = _family(config_dict, config_file or where)
    model_type = config_dict.get("model_type")
    if task not in family.TASKS:
        raise ValueError(
            f"unknown task {task!r} for {model_type}; accepted: {sorted(family.TASKS)}"
        )
    for name, value in (options or {}).items():
        if name not in family.LOAD_OPTIONS:
            raise TypeError(
                f"{name} is not an option of {model_type} models; they take"
                f" {sorted(family.LOAD_OPTIONS) or 'none'}"
            )
        if value not in family.LOAD_OPTIONS[name]:
            raise ValueError(
                f"unknown {name} {value!r}; accepted: {list(family.LOAD_OPTIONS[name])}"
            )
    get_profile(
        config_dict["model_type"], profile
    )  # an unknown profile is the caller's error, not the file's
    try:
        config = family.Config.from_dict(config_dict, profile)
    except (ValueError, TypeError) as e:
        if config_file is None:
            raise
        raise CheckpointError(f"{config_file}: {e}") from None
    shapes = family.param_shapes(config, task, profile)
    storage = (options or {}).get("weight_storage", "fp32")
    check_memory(shapes, np.dtype(dtype).itemsize, where, storage)
    settings = None
    if issubclass(family.TASKS[task], GenerationMixin):  # as upstream, only these read the file
        if generation_dir is not None:
            generation_file = read_generation_config(generation_dir)
        try:
            settings = generation_settings(config_dict, generation_file, model_config=config)
        except ValueError as e:
            raise CheckpointError(str(e) if config_file is None else f"{where}/{e}") from None
    return family, config, task, profile, shapes, settings


def _assemble(plan, weights, dtype, where, backend, options):
    family, config, task, profile, shapes, settings = plan
    weights = {k: v if isinstance(v, DeferredTensor) else np.asarray(v) for k, v in weights.items()}
    for name, w in weights.items():
        if np.issubdtype(w.dtype, np.floating) and not isinstance(w, DeferredTensor):
            weights[name] = w.astype(dtype, copy=False)
    ignored, aliases, optional = family.checkpoint_rules(config, task)
    params = match_keys(
        weights,
        shapes,
        prefix=family.BASE_PREFIX,
        ignored=ignored,
        aliases=aliases,
        optional=optional,
        where=where,
    )
    deferred = {name: w for name, w in params.items() if isinstance(w, DeferredTensor)}
    bad = [name for name, w in params.items() if name not in deferred and not _all_finite(w)]
    model = family.TASKS[task](
        config, params, profile=profile, backend=get_backend(backend), **options
    )
    if settings is not None:  # a generating model: generate()'s settings from the checkpoint
        model.generation_config = settings
    load_deferred(model.params)  # what the backend did not convert as it stored it
    for w in weights.values():
        if isinstance(w, DeferredTensor):
            w.finish()  # a tensor the model does not use: counted as read
    bad = sorted(bad + [name for name, w in deferred.items() if not w.finite])
    if bad:
        warnings.warn(f"{where}: weights with NaN or Inf values: {bad[:8]}", stacklevel=3)
    return model


def _all_finite(w):
    """No NaN or Inf in w, read without a temporary the size of w (np.isfinite(w) would make one, 38
    MB for an MPT-125M embedding): min and max carry any NaN, and an Inf is one of them."""
    if w.size == 0 or not np.issubdtype(w.dtype, np.inexact):
        return True
    return bool(np.isfinite(w.min()) and np.isfinite(w.max()))


def physical_memory():
    """Bytes of RAM on this machine, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# the bytes a matrix weight takes in each weight_storage (q8: an int8 and a float32 scale per 32)
MATRIX_BYTES = {"fp32": 4, "bf16": 2, "q8": 1 + 4 / 32}


def weight_bytes(shapes, storage="fp32", itemsize=4):
    """The bytes of parameters of these shapes loaded with this weight_storage: each at
    ``itemsize`` bytes a value (the dtype's), but the 2-D ones at MATRIX_BYTES[storage] where the
    storage is a low-precision one."""
    matrix_bytes = None if storage == "fp32" else MATRIX_BYTES[storage]
    return sum(
        int(np.prod(s, dtype=np.float64))
        * (matrix_bytes if matrix_bytes and len(s) == 2 else itemsize)
        for s in shapes.values()
    )


def check_memory(shapes, itemsize, where, storage="fp32"):
    """Refuse a config whose weights could not fit in memory, before anything is read or
    allocated (weight_bytes)."""
    need = weight_bytes(shapes, storage, itemsize)
    have = physical_memory()
    if have is not None and need > have:
        raise CheckpointError(
            f"{where}: the config implies {need / 2**30:.1f} GiB of weights, more than this "
            f"machine's {have / 2**30:.1f} GiB of memory"
        )


def from_pretrained(
    path, task="base", profile=None, backend="numpy", dtype=np.float32, on_tensor=None, **options
):
    """Load an HF model directory (config.json + model.safetensors or a sharded index).

    task: MPNet: base, masked-lm, sequence-classification, multiple-choice, token-classification,
    question-answering. MPT: base, causal-lm, sequence-classification, token-classification,
    question-answering. profile: None (the family default), "pt" or "tf" for MPNet, "hf" or "mosaic"
    for MPT. dtype: the float type weights are widened or narrowed to and computed in (float32 or
    float64). backend: "numpy" (the reference) or "numba" (fast CPU kernels). MPT also takes
    weight_storage="bf16" with backend="numba": matrices kept as bfloat16, half the memory traffic;
    "q8" (opt-in): int8 in blocks of 32 with a float32 scale each, about 1.1 bytes per weight.
    MPT's kv_cache="bf16" (numpy or numba; opt-in) rounds keys and values to bfloat16 as they are
    cached, half the bytes a long context's decode step reads.
    on_tensor: called after each tensor is read (the command line draws a progress bar with it).
    Weights are read from the files, never mapped; where the backend keeps matrices in layouts of
    its own (Backend.defers), each is read straight into place, so loading needs about the memory
    the loaded model holds, not twice it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {list(BACKENDS)}")
    get_backend(backend)  # a missing optional dependency fails here, before any file is read
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    config = read_config(path)
    plan = _plan(
        config,
        task,
        profile,
        dtype,
        str(path),
        os.path.join(path, "config.json"),
        options,
        generation_dir=path,
    )  # before any read
    # a stack that keeps the matrices in its own layout reads them from the file into it
    defer = config.get("model_type") in get_backend(backend).defers
    weights = read_weights(path, dtype, on_tensor, defer)
    return _assemble(plan, weights, dtype, str(path), backend, options)


def _family(config_dict, where):
    model_type = config_dict.get("model_type") if isinstance(config_dict, dict) else None
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{where}: model_type {model_type!r} is not supported; accepted: {sorted(FAMILIES)}"
        )
    return FAMILIES[model_type]
