"""Self-test of the PyTorch twin: run `/usr/bin/python3 interop/torch/test_webseq_torch.py`.

Plain asserts: state_dict names equal CONTRACTS.md section 3 for every variant, the tied head is
omitted, save_run/load_run round trips exactly, fully padded rows stay finite, masks and
causality hold, the safetensors reader rejects corrupt files, and the golden fixtures (if present)
are reproduced.
"""

import json
import math
import os
import random
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from safetensors_io import dump_bytes, load_bytes, load_file  # noqa: E402
from webseq_torch import (  # noqa: E402
    Seq2Seq, contract_names, file_state_dict, load_run, make_config, save_run, seq2seq_loss,
)

SMALL = {
    "vocab_size": 37, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_encoder_layers": 2,
    "n_decoder_layers": 2, "max_position": 24, "dropout": 0.0, "drop_path": 0.0,
}
VARIANTS = [
    {"ffn_activation": a, "positional_encoding": p, "tie_embeddings": t, "layer_scale_init": ls}
    for a in ("gelu", "swiglu") for p in ("sinusoidal", "learned") for t in (True, False) for ls in (0.1, None)
]


def batch(cfg, B=3, S=7, T=6, src_lens=(7, 4, 2), tgt_lens=(6, 3, 5)):
    g = torch.Generator().manual_seed(0)
    V = cfg["vocab_size"]
    src = torch.randint(3, V, (B, S), generator=g)
    tgt = torch.randint(3, V, (B, T), generator=g)
    src_mask = torch.zeros(B, S, dtype=torch.long)
    tgt_mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        src_mask[b, : src_lens[b]] = 1
        tgt_mask[b, : tgt_lens[b]] = 1
    return src * src_mask, src_mask, tgt * tgt_mask, tgt_mask


def test_names_match_contract():
    expected_counts = {}
    for v in VARIANTS:
        cfg = make_config({**SMALL, **v})
        model = Seq2Seq(cfg)
        keys = list(model.state_dict().keys())
        names = contract_names(cfg)
        assert sorted(keys) == sorted(names), (v, set(keys) ^ set(names))
        assert len(keys) == len(set(keys))
        assert [n for n, _ in model.named_parameters()] == keys, "every state_dict entry is a parameter"
        assert ("decoder.lm_head.weight" in keys) == (not v["tie_embeddings"])
        assert ("encoder.pos.weight" in keys) == (v["positional_encoding"] == "learned")
        assert any(k.endswith("gamma3") for k in keys) == (v["layer_scale_init"] is not None)
        expected_counts[str(v)] = len(keys)
    # A hand-written spot check of section 3 for one variant.
    names = set(contract_names({**SMALL, "ffn_activation": "swiglu", "tie_embeddings": False}))
    for n in [
        "encoder.embed.weight", "encoder.layers.1.self_attn.out_proj.bias", "encoder.layers.0.gamma2",
        "encoder.layers.0.ffn.w_gate.weight", "encoder.norm.bias", "decoder.layers.1.cross_attn.k_proj.weight",
        "decoder.layers.0.norm3.weight", "decoder.layers.1.gamma3", "decoder.norm.weight",
        "decoder.lm_head.weight", "decoder.embed.weight",
    ]:
        assert n in names, n
    # Shapes: Linear [out, in].
    m = Seq2Seq({**SMALL, "ffn_activation": "gelu"})
    sd = m.state_dict()
    assert tuple(sd["encoder.layers.0.ffn.fc1.weight"].shape) == (32, 16)
    assert tuple(sd["decoder.embed.weight"].shape) == (37, 16)


def test_tied_head_is_the_embedding():
    m = Seq2Seq({**SMALL, "tie_embeddings": True})
    assert m.decoder.lm_head_weight is m.decoder.embed.weight
    assert m.encoder.embed.weight is not m.decoder.embed.weight
    assert "decoder.lm_head.weight" not in file_state_dict(m)


def test_save_load_round_trip():
    torch.manual_seed(1)
    for v in VARIANTS:
        cfg = make_config({**SMALL, **v})
        m = Seq2Seq(cfg).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        args = batch(cfg)
        with tempfile.TemporaryDirectory() as d:
            tok = os.path.join(d, "tok.json")
            with open(tok, "w") as f:
                f.write('{"model": {}}')
            run = os.path.join(d, "run")
            save_run(m, cfg, run, tokenizer_json_path=tok)
            assert sorted(os.listdir(run)) == ["config.json", "model.safetensors", "tokenizer.json"], os.listdir(run)
            with open(os.path.join(run, "config.json")) as f:
                assert json.load(f) == cfg
            tensors = load_file(os.path.join(run, "model.safetensors"))
            assert sorted(tensors) == sorted(contract_names(cfg))
            assert all(t.dtype == torch.float32 for t in tensors.values())
            m2, cfg2 = load_run(run)
        assert cfg2 == cfg
        for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        with torch.no_grad():
            assert torch.equal(m(*args), m2(*args))


def test_load_rejects_mismatches():
    cfg = make_config(SMALL)
    m = Seq2Seq(cfg)
    with tempfile.TemporaryDirectory() as d:
        save_run(m, cfg, d)
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        del tensors["encoder.norm.bias"]
        with open(path, "wb") as f:
            f.write(dump_bytes(tensors))
        try:
            load_run(d)
            raise AssertionError("missing tensor accepted")
        except ValueError as e:
            assert "encoder.norm.bias" in str(e), e


def test_fully_padded_rows_stay_finite():
    for v in VARIANTS[:4]:
        cfg = make_config({**SMALL, **v})
        m = Seq2Seq(cfg).eval()
        src, src_mask, tgt, tgt_mask = batch(cfg)
        src_mask[1] = 0
        src[1] = 0
        tgt_mask[2] = 0
        tgt[2] = 0
        logits = m(src, src_mask, tgt, tgt_mask)
        assert torch.isfinite(logits).all()
        tgt_ids = tgt.clone()
        loss = seq2seq_loss(logits, tgt_ids, cfg["pad_token_id"])
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
        # Pinned: an all-masked row attends uniformly to every key.
        att = m.encoder.layers[0].self_attn
        x = torch.randn(1, 4, cfg["d_model"])
        out = att(x, x, torch.zeros(1, 4))
        v_ = att.v_proj(x).mean(dim=1, keepdim=True)
        assert torch.allclose(out, att.out_proj(v_).expand_as(out), atol=1e-6)


def test_masks_and_causality():
    cfg = make_config({**SMALL, "positional_encoding": "learned"})
    m = Seq2Seq(cfg).eval()
    src, src_mask, tgt, tgt_mask = batch(cfg)
    base = m(src, src_mask, tgt, tgt_mask)
    # Changing a padded source token changes nothing.
    src2 = src.clone()
    src2[2, 5] = 9
    assert torch.equal(m(src2, src_mask, tgt, tgt_mask), base)
    # Changing target token t changes only logits at positions >= t.
    tgt2 = tgt.clone()
    tgt2[0, 3] = (tgt[0, 3] + 1) % cfg["vocab_size"]
    out = m(src, src_mask, tgt2, tgt_mask)
    assert torch.equal(out[0, :3], base[0, :3]) and not torch.equal(out[0, 3], base[0, 3])
    assert torch.equal(out[1:], base[1:])


def test_sinusoidal_table():
    from webseq_torch import sinusoidal_table

    pe = sinusoidal_table(10, 6)
    for p in range(10):
        for i in range(3):
            assert abs(pe[p, 2 * i].item() - math.sin(p / 10000 ** (2 * i / 6))) < 1e-12
            assert abs(pe[p, 2 * i + 1].item() - math.cos(p / 10000 ** (2 * i / 6))) < 1e-12


def test_train_mode_dropout_and_droppath():
    cfg = make_config({**SMALL, "dropout": 0.3, "drop_path": 0.3, "attention_dropout": 0.2})
    m = Seq2Seq(cfg)
    args = batch(cfg)
    m.eval()
    a, b = m(*args), m(*args)
    assert torch.equal(a, b)
    m.train()
    torch.manual_seed(0)
    c = m(*args)
    torch.manual_seed(1)
    d = m(*args)
    assert not torch.equal(c, d)


def test_safetensors_rejects_corrupt_files():
    good = dump_bytes({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.int32)},
                      {"k": "v"})
    t, meta = load_bytes(good)
    assert meta == {"k": "v"} and torch.equal(t["a"], torch.arange(6.0).reshape(2, 3))
    (n,) = struct.unpack("<Q", good[:8])
    assert (8 + n) % 8 == 0

    def expect_bad(buf, word):
        try:
            load_bytes(buf, "x.safetensors")
        except ValueError as e:
            assert word in str(e) and "\n" not in str(e), (word, str(e))
            return
        raise AssertionError(f"accepted a file that should fail with {word!r}")

    expect_bad(good[:5], "shorter")
    expect_bad(good[:-1], "need")
    expect_bad(good + b"\0", "trailing")
    expect_bad(struct.pack("<Q", 10**9) + good[8:], "limit")

    def with_header(h, data=b""):
        raw = h.encode()
        return struct.pack("<Q", len(raw)) + raw + data

    expect_bad(with_header('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{}}', b"\0" * 8), "duplicate")
    expect_bad(with_header('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\0" * 8), "needs")
    expect_bad(with_header('{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8), "dtype")
    expect_bad(with_header('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8), "contiguous")
    expect_bad(struct.pack("<Q", 2) + b"\xff\xfe", "UTF-8")
    expect_bad(with_header("[1,2]"), "object")
    expect_bad(with_header("{"), "JSON")
    # Fuzz: random byte flips and truncations never crash with anything but ValueError.
    rng = random.Random(0)
    for _ in range(500):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.3:
            buf = buf[: rng.randrange(len(buf))]
        try:
            load_bytes(bytes(buf))
        except ValueError:
            pass


def test_golden_fixtures_reproduce():
    folder = os.path.join(HERE, "..", "..", "tests", "testdata", "golden")
    if not os.path.isdir(folder):
        print("  (no golden fixtures yet; skipped)")
        return
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    assert files, "golden folder is empty"
    for name in files:
        tensors, meta = load_file(os.path.join(folder, name), with_metadata=True)
        cfg = make_config(json.loads(meta["config"]))
        m = Seq2Seq(cfg).double().eval()
        own = m.state_dict()
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(tensors[k].double())
        inp = lambda k: tensors[f"input.{k}"].long()  # noqa: E731
        logits = m(inp("src_ids"), inp("src_mask"), inp("tgt_ids"), inp("tgt_mask"))
        ref = tensors["output.logits"].double()
        scale = ref.abs().max().item()
        err = (logits - ref).abs().max().item() / scale
        assert err < 1e-6, (name, err)
        loss = seq2seq_loss(logits.double(), inp("target_ids"), cfg["pad_token_id"])
        assert abs(loss.item() - tensors["output.loss"].item()) < 1e-5 * abs(loss.item()), name
        loss.backward()
        for k, p in m.named_parameters():
            g_ref = tensors[f"grad.{k}"].double()
            gscale = max(g_ref.abs().max().item(), 1e-12)
            assert (p.grad - g_ref).abs().max().item() / gscale < 1e-5, (name, k)


if __name__ == "__main__":
    torch.manual_seed(0)
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    for n, f in tests:
        f()
        print(f"ok  {n}")
    print(f"{len(tests)} passed")
