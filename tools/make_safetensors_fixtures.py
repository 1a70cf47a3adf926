#!/usr/bin/python3
"""Builds and checks the safetensors fixtures of train/safetensors_test.ts with PyTorch.

    /usr/bin/python3 tools/make_safetensors_fixtures.py

1. Writes tests/testdata/safetensors/torch_written.safetensors from torch tensors
   (F32, F16, BF16, F64, I32, I64, U8, BOOL, a scalar and an empty tensor) and
   torch_written.json with the values a reader must return, the raw 16-bit
   patterns torch produced, and the float32 inputs they were rounded from (so
   webseq's float32 -> F16/BF16 rounding is checked against torch's).
2. Reads tests/testdata/safetensors/webseq_written.safetensors (written by
   webseq's serializeSafetensors(); the test checks it is byte-identical to
   what the writer makes now) and checks every value against torch.

It uses `safetensors.torch.save_file`/`load_file` when the `safetensors`
package is installed. Debian has no python3-safetensors, so otherwise it uses
the small fallback below, which follows the reference implementation
(huggingface/safetensors `prepare` and `read_metadata`); the files are also
cross-checked with the reference Rust crate (tools/safetensors_reference).
Needs: apt-get install -y python3-torch
"""
import json
import math
import pathlib
import struct
import sys

import torch

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "testdata" / "safetensors"

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
# Order of the reference `Dtype` enum; the reference writer sorts by it, descending.
RANK = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
        "F64", "I64", "U64"]
SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4,
         "F64": 8, "I64": 8}


def _tensor_bytes(t):
    return raw_bytes(t).numpy().tobytes() if t.numel() else b""


def raw_bytes(t):
    """The little-endian bytes of a tensor as a flat uint8 tensor."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def fallback_save_file(tensors, filename, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-RANK.index(DTYPES[kv[1].dtype]), kv[0]))
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in items:
        b = _tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    js += b" " * (-len(js) % 8)
    with open(filename, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(chunks))


def fallback_load_file(filename):
    buf = pathlib.Path(filename).read_bytes()
    (n,) = struct.unpack("<Q", buf[:8])
    assert n <= 100_000_000 and 8 + n <= len(buf), "bad header length"
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    out, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = info["data_offsets"]
        assert b == end and e >= b, f"bad offsets for {name}"
        assert math.prod(info["shape"]) * SIZES[info["dtype"]] == e - b, f"bad size for {name}"
        end = e
        dtype = {v: k for k, v in DTYPES.items()}[info["dtype"]]
        raw = buf[8 + n + b:8 + n + e]
        out[name] = (torch.frombuffer(bytearray(raw), dtype=dtype).reshape(info["shape"])
                     if raw else torch.empty(info["shape"], dtype=dtype))
    assert 8 + n + end == len(buf), "trailing bytes or truncated data"
    return out


try:
    from safetensors.torch import load_file, save_file
    BACKEND = "safetensors.torch"
except ImportError:
    load_file, save_file = fallback_load_file, fallback_save_file
    BACKEND = "the fallback (reference-compatible) reader and writer"


def as_json(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


# Float32 inputs whose F16/BF16 rounding is easy to get wrong: ties, subnormals,
# overflow to infinity, signed zero, NaN.
ROUNDING_CASES = [
    0.0, -0.0, 1.0, -2.5, 0.1, 1 / 3, 65504.0, 65519.0, 65520.0, 1e6, 6.1e-5, 5.96e-8,
    2.98e-8, 2.99e-8, 1e-9, 1.0009765625, 1.00048828125, 1.00146484375, 3.4e38,
    1.00390625, 1.001953125, 1.005859375, 1e-40, float("inf"), float("-inf"), float("nan"),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    src = torch.tensor(ROUNDING_CASES, dtype=torch.float32)
    tensors = {
        "encoder.embed.weight": torch.randn(5, 4, generator=g),
        "decoder.layers.0.ffn.fc1.bias": torch.randn(4, generator=g),
        "half": src.to(torch.float16),
        "bf16": src.to(torch.bfloat16),
        "double": torch.tensor([math.pi, -1e300], dtype=torch.float64),
        "ids": torch.tensor([[0, -1, 2**31 - 1], [-2**31, 7, 42]], dtype=torch.int32),
        "long": torch.tensor([2**53, -3, 0], dtype=torch.int64),
        "bytes": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3),
    }
    path = OUT / "torch_written.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "source": "make_safetensors_fixtures.py"})
    expected = {}
    for name, t in tensors.items():
        entry = {"dtype": DTYPES[t.dtype], "shape": list(t.shape)}
        if t.dtype in (torch.int64,):
            entry["values"] = [str(v) for v in t.flatten().tolist()]  # exact as text
        elif t.dtype == torch.bool:
            entry["values"] = [int(v) for v in t.flatten().tolist()]
        else:
            entry["values"] = [as_json(v) for v in t.to(torch.float64 if t.is_floating_point()
                                                         else t.dtype).flatten().tolist()]
        if t.dtype in (torch.float16, torch.bfloat16):
            entry["bits"] = [v & 0xFFFF for v in t.view(torch.int16).flatten().tolist()]
            entry["float32_source"] = [as_json(v) for v in src.tolist()]
        expected[name] = entry
    (OUT / "torch_written.json").write_text(json.dumps(expected, indent=1) + "\n")
    back = load_file(str(path))
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(raw_bytes(back[name]), raw_bytes(t)), name
    print(f"wrote {path.name} and torch_written.json with {BACKEND}")

    # The file webseq wrote (see webseqFixture() in train/safetensors_test.ts).
    ours = OUT / "webseq_written.safetensors"
    if not ours.exists():
        print(f"{ours.name} not found: run the deno tests first", file=sys.stderr)
        return 1
    got = load_file(str(ours))
    want = {
        "w": torch.tensor([i * 0.5 - 1 for i in range(6)], dtype=torch.float32).reshape(2, 3),
        "b": torch.tensor([0.1, 0.2, 0.3], dtype=torch.float32),
        "ids": torch.tensor([0, -1, 2**31 - 1, -2**31], dtype=torch.int32),
        "h": torch.tensor([1.0, 0.1, 65504.0, 1e-5, -0.0, 70000.0], dtype=torch.float32).half(),
        "bh": torch.tensor([1.0, 0.1, -3.0e38, 1e-40], dtype=torch.float32).bfloat16(),
        "scalar": torch.tensor(-7.0, dtype=torch.float32),
        "empty": torch.zeros(2, 0),
    }
    assert set(got) == set(want), sorted(got)
    for name, t in want.items():
        assert got[name].dtype == t.dtype, (name, got[name].dtype)
        assert got[name].shape == t.shape, (name, got[name].shape)
        if t.numel():
            assert torch.equal(raw_bytes(got[name]), raw_bytes(t)), name
    print(f"read {ours.name} with {BACKEND}: {len(want)} tensors equal torch's bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
