"""Builds the golden PyTorch fixtures for webseq's model parity tests.

Run: /usr/bin/python3 tools/make_golden_fixtures.py   (needs Debian's python3-torch)
Writes tests/testdata/golden/<variant>.safetensors, one file per model variant, each holding
  - every parameter under its CONTRACTS.md section 3 name (F32; the tied lm_head is omitted),
  - inputs  input.src_ids [B,S], input.src_mask [B,S], input.tgt_ids [B,T], input.tgt_mask [B,T],
            input.target_ids [B,T] (I32; pad 0 at padded positions; rows of different lengths),
  - outputs output.logits [B,T,V] (F32), output.loss [1] = CrossEntropyLoss(ignore_index=pad) mean,
            output.loss_smoothed [1] = the same with label_smoothing=0.1,
  - grad.<name> for every parameter: d output.loss / d parameter (tied: the shared tensor's grad
    under grad.decoder.embed.weight, which includes the lm_head contribution),
  - __metadata__: "config" (the config JSON), "label_smoothing", "generator", "torch_version".
Tolerances: a float32 forward/backward of these weights (PyTorch, CPU) is within 2e-7 of
output.logits and within 2e-6 of every grad.* (relative to each tensor's max |value|) -- except
grad.*.k_proj.bias, which is mathematically ZERO (a key bias adds q.b to every score of a query
row, and softmax is shift-invariant); its stored values are float64 round-off (~1e-17), so compare
those with an absolute floor (e.g. |dx| <= 1e-6).
The model runs in eval mode with dropout 0, in float64 (model.double()); the weights are first
rounded to float32, so a float32 implementation starts from exactly the stored weights.
The model semantics are those pinned in interop/torch/webseq_torch.py.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "interop", "torch"))

import torch  # noqa: E402

from safetensors_io import save_file  # noqa: E402
from webseq_torch import Seq2Seq, contract_names, make_config, seq2seq_loss  # noqa: E402

OUT = os.path.join(ROOT, "tests", "testdata", "golden")
BASE = {
    "vocab_size": 37, "d_model": 16, "n_heads": 2, "d_ff": 32,
    "n_encoder_layers": 2, "n_decoder_layers": 2, "max_position": 24,
    "dropout": 0.0, "attention_dropout": 0.0, "drop_path": 0.0, "layer_scale_init": 0.1,
}
VARIANTS = {
    "gelu_sinusoidal_tied": {"ffn_activation": "gelu", "positional_encoding": "sinusoidal", "tie_embeddings": True},
    "swiglu_learned_untied": {"ffn_activation": "swiglu", "positional_encoding": "learned", "tie_embeddings": False},
    "gelu_learned_untied_noscale": {
        "ffn_activation": "gelu", "positional_encoding": "learned", "tie_embeddings": False, "layer_scale_init": None,
    },
    "swiglu_sinusoidal_tied": {"ffn_activation": "swiglu", "positional_encoding": "sinusoidal", "tie_embeddings": True},
}
B, S, T = 3, 7, 6
SRC_LENS = (7, 4, 2)  # row 0 full, rows 1-2 padded
TGT_LENS = (4, 6, 3)  # row 1 full
LABEL_SMOOTHING = 0.1


def randomise(model, seed):
    """Non-trivial weights so that any mix-up shows: random LayerNorm affine, random gammas."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("gamma"):
                v = 0.1 + 0.5 * torch.rand(p.shape, generator=g)  # in [0.1, 0.6)
            elif ".norm" in name and leaf == "weight":
                v = 1.0 + 0.3 * torch.randn(p.shape, generator=g)
            elif leaf == "bias":
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("embed.weight"):
                v = 0.4 * torch.randn(p.shape, generator=g)
            elif name.endswith("pos.weight"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            else:  # Linear [out, in]
                v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            p.copy_(v.float())


def make_inputs(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    V, pad, eos, start = cfg["vocab_size"], cfg["pad_token_id"], cfg["eos_token_id"], cfg["decoder_start_token_id"]
    src = torch.full((B, S), pad, dtype=torch.long)
    src_mask = torch.zeros(B, S, dtype=torch.long)
    tgt = torch.full((B, T), pad, dtype=torch.long)
    target = torch.full((B, T), pad, dtype=torch.long)
    tgt_mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        ls, lt = SRC_LENS[b], TGT_LENS[b]
        src[b, : ls - 1] = torch.randint(3, V, (ls - 1,), generator=g)
        src[b, ls - 1] = eos
        src_mask[b, :ls] = 1
        y = torch.randint(3, V, (lt - 1,), generator=g)  # target tokens
        tgt[b, 0] = start
        tgt[b, 1:lt] = y
        target[b, : lt - 1] = y
        target[b, lt - 1] = eos
        tgt_mask[b, :lt] = 1
    return src, src_mask, tgt, tgt_mask, target


def build(name, overrides, seed):
    cfg = make_config({**BASE, **overrides})
    model = Seq2Seq(cfg)
    randomise(model, seed)
    model = model.double().eval()
    src, src_mask, tgt, tgt_mask, target = make_inputs(cfg, seed + 1000)
    logits = model(src, src_mask, tgt, tgt_mask)
    loss = seq2seq_loss(logits.double(), target, cfg["pad_token_id"])
    loss_smoothed = seq2seq_loss(logits.double(), target, cfg["pad_token_id"], LABEL_SMOOTHING)
    loss.backward()

    params = dict(model.named_parameters())
    assert sorted(params) == sorted(contract_names(cfg)), name
    out = {}
    for k, p in params.items():
        out[k] = p.detach().float()
        out[f"grad.{k}"] = p.grad.float()
    for k, v in (("src_ids", src), ("src_mask", src_mask), ("tgt_ids", tgt), ("tgt_mask", tgt_mask),
                 ("target_ids", target)):
        out[f"input.{k}"] = v.to(torch.int32)
    out["output.logits"] = logits.detach().float()
    out["output.loss"] = loss.detach().float().reshape(1)
    out["output.loss_smoothed"] = loss_smoothed.detach().float().reshape(1)
    meta = {
        "config": json.dumps(cfg),
        "label_smoothing": str(LABEL_SMOOTHING),
        "generator": "tools/make_golden_fixtures.py (float64 reference, stored as F32)",
        "torch_version": torch.__version__,
        "note": "grad.*.k_proj.bias is mathematically zero (softmax shift invariance): compare with an absolute floor",
    }
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(out, path, metadata=meta)
    size = os.path.getsize(path)
    assert size < 150_000, (path, size)
    print(f"{path}: {size} bytes, loss {loss.item():.6f}, max|logit| {logits.abs().max().item():.3f}")


def main():
    torch.set_default_dtype(torch.float32)
    os.makedirs(OUT, exist_ok=True)
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        build(name, overrides, seed=100 + i)


if __name__ == "__main__":
    main()
