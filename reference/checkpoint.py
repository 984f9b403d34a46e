"""Reading Hugging Face model directories: config.json, safetensors (single or sharded), key names.

The safetensors reader is our own small parser of the documented format (an 8-byte little-endian
header length, a JSON header of name -> dtype, shape, [begin, end) byte offsets, then the data), so
that bf16 widens without PyTorch and every inconsistency in a file gets a precise message. Pickle
checkpoints (pytorch_model.bin, *.pt, *.pth, *.ckpt) are never opened.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings

import numpy as np

SAFETENSORS_DTYPES = {  # safetensors dtype tag -> numpy storage dtype
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
PICKLE_NAMES = ("pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERT_HINT = (
    'convert it once, where PyTorch is installed, with: python -c "from transformers import'
    " AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\""
)


class CheckpointError(ValueError):
    """A checkpoint file or directory that cannot be used; the message names the file and the
    problem."""


def bf16_to_float32(raw):  # uint16 bit patterns -> float32
    """bfloat16 is the top half of a float32, so widening is a 16-bit shift."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _header(path):
    """(tensor entries, data offset) of one .safetensors file, every inconsistency named."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: file is {size} bytes, too short to be safetensors")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise CheckpointError(
                f"{path}: header length {header_len} runs past the end of the {size}-byte file"
            )
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + header_len


class DeferredTensor:
    """A floating matrix of a safetensors file, read where it is used: ``t[rows]`` reads those rows
    from the file and ``np.asarray(t)`` all of it, converted to ``dtype`` each time (nothing is
    kept, and the file is read, not mapped, so only what is in use is in memory).

    from_pretrained defers the matrices where the backend keeps them in layouts of its own
    (``Backend.defers``: the numba backend's MPT stacks, in float32, bf16 or q8, and its packed
    MPNet layers): each is then read from the file straight into place, a few rows or a layer at
    a time, and no float32 copy of the whole model exists beside them (for bf16 storage that copy
    was twice the weights' size, for q8 3.6 times). Whatever is still deferred when the model is
    built (a classification head) is read then (load_deferred).

    As rows are read, ``finite`` notes whether all were finite (from_pretrained's warning about
    NaN or Inf weights reads it, so the file is read once), and ``on_done`` is called once, when a
    read reaches the last row or ``finish()`` says the tensor will not be read (a progress bar
    counts the tensor then, not when it was found in the file)."""

    def __init__(self, path, offset, tag, shape, dtype, on_done=None):
        self.path, self.offset, self.tag, self.dtype = path, offset, tag, np.dtype(dtype)
        self.storage = np.dtype(SAFETENSORS_DTYPES[tag])
        self.shape, self.ndim, self.size = tuple(shape), len(shape), math.prod(shape)
        self.on_done, self.done, self.finite = on_done, False, True

    def __len__(self):
        return self.shape[0]

    def rows(self, start, stop):  # -> rows [start, stop) as a new array of dtype
        rows = _widened(self._raw(start, stop), self.tag, self.dtype)
        if rows.size:  # min and max carry any NaN, and an Inf is one of them
            self.finite = self.finite and bool(np.isfinite(rows.min()) and np.isfinite(rows.max()))
        return self._read_up_to(stop, rows)

    def bf16_rows(self, start, stop):  # -> rows [start, stop) of a BF16 tensor as their bits
        """The file's bf16 bit patterns (uint16) as they are, for a storage that keeps bf16: the
        same bits as rounding the widened values back (a signalling NaN stays signalling)."""
        if self.tag != "BF16":
            raise ValueError(f"bf16_rows of a {self.tag} tensor; only BF16 ones have bf16 bits")
        bits = self._raw(start, stop)
        if bits.size:  # exponent all ones: inf or NaN
            self.finite = self.finite and not bool(np.any((bits & 0x7F80) == 0x7F80))
        return self._read_up_to(stop, bits)

    def _raw(self, start, stop):  # rows [start, stop) as the file stores them
        row = self.size // max(len(self), 1)
        at = self.offset + start * row * self.storage.itemsize
        return _read(self.path, at, self.storage, (stop - start,) + self.shape[1:])

    def _read_up_to(self, stop, rows):
        if stop == len(self):
            self.finish()
        return rows

    def finish(self):  # this tensor is read (or will not be): on_done, once
        if not self.done:
            self.done = True
            if self.on_done:
                self.on_done()

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            return self.rows(start, max(start, stop))
        if isinstance(key, (int, np.integer)) and -len(self) <= key < len(self):
            start = int(key) % len(self)
            return self.rows(start, start + 1)[0]
        return np.asarray(self)[key]  # anything else, as NumPy indexes (and refuses) it

    def __array__(self, dtype=None, copy=None):
        array = self.rows(0, len(self))
        return array if dtype is None else array.astype(dtype, copy=False)


def _read(path, at, storage, shape):  # -> a new array of the file's values at byte ``at``
    """Read, not mapped: a mapping would keep every page it touched in the process's resident
    memory for as long as any tensor viewed it, beside the converted copies."""
    count = math.prod(shape)
    raw = np.fromfile(path, storage, count, offset=at) if count else np.empty(0, storage)
    if raw.size != count:
        raise CheckpointError(f"{path}: the file ended inside a tensor (was it changed?)")
    return raw.reshape(shape)


def _widened(raw, tag, dtype):  # file values -> dtype (no copy where they are dtype already)
    if tag == "BF16":
        raw = bf16_to_float32(raw)
    return raw.astype(dtype, copy=False)


def load_deferred(tree, seen=None):
    """Every DeferredTensor in a nest of dicts and lists read into an array, in place (one that
    appears twice, once, into one array)."""
    seen = {} if seen is None else seen
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        if isinstance(value, DeferredTensor):
            if id(value) not in seen:
                seen[id(value)] = (value, np.asarray(value))  # the tensor kept: ids stay unique
            tree[key] = seen[id(value)][1]
        elif isinstance(value, (dict, list)):
            load_deferred(value, seen)
    return tree


def read_safetensors(path, dtype=np.float32, on_tensor=None, defer=False):
    """All tensors of one .safetensors file; floating tensors are converted to ``dtype``, and with
    ``defer`` the 2-D ones are DeferredTensor objects, read where they are used. on_tensor(), if
    given, is called after each tensor (for a progress bar)."""
    header, offset = _header(path)
    available = os.path.getsize(path) - offset  # the data section's bytes
    tensors = {}
    for name, entry in header.items():
        tensors[name] = _tensor(path, name, entry, offset, available, dtype, defer)
        if isinstance(tensors[name], DeferredTensor):
            tensors[name].on_done = on_tensor  # counted when it has been read
        elif on_tensor:
            on_tensor()
    return tensors


def _entry(path, name, entry):
    """(dtype tag, shape, [begin, end)) of one header entry, each field checked."""
    try:
        tag, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path}: tensor {name!r} has a malformed header entry {entry!r}"
        ) from None
    if not isinstance(tag, str) or tag not in SAFETENSORS_DTYPES:
        raise CheckpointError(
            f"{path}: tensor {name!r} has unsupported dtype {tag!r}; supported:"
            f" {sorted(SAFETENSORS_DTYPES)}"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise CheckpointError(
            f"{path}: tensor {name!r} has shape {shape}; dimensions must be non-negative integers"
        )
    return tag, shape, (begin, end)


def _tensor(path, name, entry, offset, available, dtype, defer=False):
    """One tensor, read from the file (floating ones converted to dtype), or with ``defer`` a 2-D
    floating one as a DeferredTensor; ``offset`` is where the data section starts and
    ``available`` its bytes."""
    tag, shape, (begin, end) = _entry(path, name, entry)
    storage = np.dtype(SAFETENSORS_DTYPES[tag])
    nbytes = math.prod(shape) * storage.itemsize  # exact: no int64 overflow for absurd shapes
    if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= available):
        raise CheckpointError(
            f"{path}: tensor {name!r} claims bytes [{begin}, {end}) but the data section has"
            f" {available}"
        )
    if end - begin != nbytes:
        raise CheckpointError(
            f"{path}: tensor {name!r} of {tag} {shape} needs {nbytes} bytes, header gives"
            f" {end - begin}"
        )
    if tag != "BF16" and not np.issubdtype(storage, np.floating):
        return _read(path, offset + begin, storage, tuple(shape))
    if defer and len(shape) == 2:
        return DeferredTensor(path, offset + begin, tag, shape, dtype)
    return _widened(_read(path, offset + begin, storage, tuple(shape)), tag, dtype)


def read_safetensors_header(directory):
    """name -> {dtype, shape} for every tensor of a model directory, reading only the headers."""
    files, _ = _weight_files(directory)
    header = {}
    for path in files:
        for name, entry in _header(path)[0].items():
            tag, shape, _ = _entry(path, name, entry)
            header[name] = {"dtype": tag, "shape": shape}
    return header


def _json_value(path):
    """A JSON file's value, with a clear error naming the file where it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None


def _json_object(path):
    """A JSON file that must hold an object, with a clear error naming the file otherwise."""
    value = _json_value(path)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_config(directory):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(
            f"{directory}: no config.json (expected a Hugging Face model directory)"
        )
    return _json_object(path)


def read_generation_config(directory):
    """A model directory's generation_config.json as a dict, or None where it has none."""
    path = os.path.join(directory, "generation_config.json")
    return _json_object(path) if os.path.isfile(path) else None


def _weight_files(directory):
    """The safetensors files of a model directory, and the sharded index's weight map (or None)."""
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(single):
        return [single], None
    if not os.path.isfile(index):
        _refuse_pickles(directory)
        raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    weight_map = _json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{index}: weight_map must be an object of tensor name -> shard file name"
        )
    for shard in set(
        weight_map.values()
    ):  # plain file names only: an index must not point outside its directory
        if (
            os.path.basename(shard) != shard
            or shard in ("", ".", "..")
            or not shard.endswith(".safetensors")
        ):
            raise CheckpointError(
                f"{index}: shard {shard!r} is not a .safetensors file name in this directory"
            )
    files = [os.path.join(directory, n) for n in sorted(set(weight_map.values()))]
    for path in files:
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: listed in model.safetensors.index.json but missing")
    return files, weight_map


def read_weights(directory, dtype=np.float32, on_tensor=None, defer=False):
    """Every tensor of model.safetensors, or of the shards listed in
    model.safetensors.index.json (``defer``: as read_safetensors)."""
    files, weight_map = _weight_files(directory)
    weights = {}
    for path in files:
        weights.update(read_safetensors(path, dtype, on_tensor, defer))
    missing = sorted(set(weight_map or {}) - set(weights))
    if missing:
        raise CheckpointError(
            f"{directory}: tensors listed in the index but absent from their shards: {missing[:5]}"
        )
    return weights


def _refuse_pickles(directory):
    pickles = sorted(
        n for n in os.listdir(directory) if n in PICKLE_NAMES or n.endswith(PICKLE_SUFFIXES)
    )
    if pickles:
        raise CheckpointError(
            f"{directory}: only pickle/framework checkpoints found ({', '.join(pickles)}); these"
            f" are never unpickled because loading them can run arbitrary code. {CONVERT_HINT}"
        )


def match_keys(weights, expected_shapes, prefix, ignored=(), aliases=None, optional=(), where=""):
    """Rename checkpoint keys to the model's keys, check shapes, and report what is missing or
    extra.

    Keys may carry the base-model ``prefix`` ("mpnet.") or not. ``aliases`` maps alternative names
    (tied copies) to model keys. Returns the params dict; missing keys raise, extra keys warn.
    """
    aliases = aliases or {}
    params, unexpected = {}, []
    for name, array in weights.items():
        key = name[len(prefix) :] if name.startswith(prefix) else name
        if key in ignored or name in ignored:
            continue
        key = aliases.get(key, key)
        if key not in expected_shapes:
            unexpected.append(name)
            continue
        if tuple(array.shape) != tuple(expected_shapes[key]):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(array.shape)}, the config implies"
                f" {tuple(expected_shapes[key])}"
            )
        params.setdefault(key, array)
    missing = sorted(k for k in expected_shapes if k not in params and k not in optional)
    if missing:
        raise CheckpointError(
            f"{where}: missing weights {missing} (checkpoint has {len(weights)} tensors)"
        )
    if unexpected:
        warnings.warn(
            f"{where}: ignoring {len(unexpected)} unexpected weights: {sorted(unexpected)[:8]}",
            stacklevel=3,
        )
    return params


def nest(params):  # {"a.0.b.weight": w, ...} -> {"a": [{"b": {"weight": w}}], ...}
    """Checkpoint names as a nested structure that mirrors them: each dot is a level, and a level
    whose keys are 0, 1, 2, ... becomes a list (``encoder.layer.3.attention.attn.q.weight`` is
    ``p["encoder"]["layer"][3]["attention"]["attn"]["q"]["weight"]``). Built once at load, so the
    forward pass walks layers and never formats a key. Arrays are shared, not copied."""
    tree: dict = {}
    for name, array in params.items():
        node = tree
        *path, leaf = name.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = array
    return _lists(tree)


def _lists(node):
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        if sorted(int(k) for k in node) != list(range(len(node))):
            raise ValueError(
                f"numbered parameter levels must run 0..{len(node) - 1}, got"
                f" {sorted(node, key=int)}"
            )
        return [node[str(i)] for i in range(len(node))]
    return node


def flatten(tree, prefix=""):  # the inverse of nest
    """The checkpoint-named arrays of a nested parameter structure (``state_dict``)."""
    items = enumerate(tree) if isinstance(tree, list) else tree.items()
    flat = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
