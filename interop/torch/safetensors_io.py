"""A small, strict safetensors reader and writer in pure Python (struct + json).

Debian has no python3-safetensors package, so this file stands in for
``safetensors.torch.load_file`` / ``save_file``. Files it writes load with the
real library, and it reads any file the real library writes.

Format (https://github.com/huggingface/safetensors#format):
    8 bytes   little-endian u64 N, the header length
    N bytes   UTF-8 JSON: {name: {"dtype", "shape", "data_offsets": [begin, end]},
              optional "__metadata__": {str: str}}; padded with spaces so the
              data starts at a multiple of 8
    rest      the tensor bytes, little-endian, row-major, offsets relative to
              the start of this section

The reader rejects (ValueError, one line naming the file and the fault):
a header over 100 MB, invalid UTF-8 or JSON, duplicate keys, unknown dtypes,
shape x dtype size != byte length, offsets that are not contiguous from 0 or
run past the end, and trailing bytes after the last tensor.

Usage:
    from safetensors_io import load_file, save_file
    tensors = load_file("runs/x/model.safetensors")          # {name: torch.Tensor}
    save_file({"w": torch.zeros(2, 3)}, "out.safetensors", metadata={"k": "v"})
"""

import json
import os
import struct
import tempfile

import torch

MAX_HEADER_BYTES = 100_000_000

# safetensors dtype name -> (torch dtype, bytes per element)
DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_NAME_OF = {dt: name for name, (dt, _) in DTYPES.items()}


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_header(buf, source="safetensors"):
    """Validates a whole file's bytes; returns (entries, metadata, data_start).

    entries: list of (name, dtype_name, shape, begin, end) sorted by begin.
    """
    if len(buf) < 8:
        raise ValueError(f"{source}: file is {len(buf)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"{source}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(buf):
        raise ValueError(f"{source}: header length {n} runs past the end of the {len(buf)}-byte file")
    try:
        text = bytes(buf[8 : 8 + n]).decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source}: header is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as e:
        msg = str(e).splitlines()[0]
        raise ValueError(f"{source}: header is not valid JSON ({msg})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: header must be a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{source}: __metadata__ must be an object of strings")
    data_start = 8 + n
    data_len = len(buf) - data_start
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{source}: tensor {name!r} must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise ValueError(f"{source}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"{source}: tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise ValueError(f"{source}: tensor {name!r} has invalid data_offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        size = count * DTYPES[dtype][1]
        if offsets[1] - offsets[0] != size:
            raise ValueError(
                f"{source}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes but shape {shape} x {dtype} needs {size}"
            )
        entries.append((name, dtype, shape, offsets[0], offsets[1]))
    entries.sort(key=lambda e: (e[3], e[4]))
    pos = 0
    for name, _, _, begin, end in entries:
        if begin != pos:
            raise ValueError(f"{source}: tensor {name!r} starts at byte {begin}, expected {pos} (offsets not contiguous)")
        pos = end
    if pos > data_len:
        raise ValueError(f"{source}: tensors need {pos} data bytes but the file holds {data_len}")
    if pos < data_len:
        raise ValueError(f"{source}: {data_len - pos} trailing bytes after the last tensor")
    return entries, metadata, data_start


def load_bytes(buf, source="safetensors"):
    """Parses safetensors bytes; returns ({name: tensor}, metadata)."""
    entries, metadata, data_start = parse_header(buf, source)
    out = {}
    for name, dtype, shape, begin, end in entries:
        tdtype, _ = DTYPES[dtype]
        raw = bytearray(buf[data_start + begin : data_start + end])
        if len(raw) == 0:
            t = torch.empty(shape, dtype=tdtype)
        else:
            t = torch.frombuffer(raw, dtype=tdtype).reshape(shape).clone()
        out[name] = t
    return out, metadata


def load_file(path, with_metadata=False):
    """Reads a safetensors file into {name: CPU tensor} (plus metadata if asked)."""
    with open(path, "rb") as f:
        buf = f.read()
    tensors, metadata = load_bytes(buf, str(path))
    return (tensors, metadata) if with_metadata else tensors


def dump_bytes(tensors, metadata=None):
    """Serialises {name: tensor} (any dtype in DTYPES) to safetensors bytes."""
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    chunks = []
    pos = 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"safetensors: value for {name!r} is not a torch.Tensor")
        if t.dtype not in _NAME_OF:
            raise TypeError(f"safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        t = t.detach().to("cpu").contiguous()
        if t.numel() == 0:
            data = b""
        elif t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        elif t.dtype == torch.bool:
            data = t.to(torch.uint8).numpy().tobytes()
        else:
            arr = t.numpy()
            data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _NAME_OF[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [pos, pos + len(data)],
        }
        chunks.append(data)
        pos += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def atomic_write_bytes(path, data):
    """Writes data to path via a temporary file in the same folder, fsync, rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_file(tensors, path, metadata=None):
    """Writes {name: tensor} to a safetensors file atomically."""
    atomic_write_bytes(path, dump_bytes(tensors, metadata))
