"""Interop round-trip fixtures: run folders written by one side, logits computed by the other.

  deno run --allow-read --allow-write=tests/testdata/interop tools/make_webseq_run.ts
  /usr/bin/python3 tools/make_interop_fixtures.py

A. The PyTorch twin writes tests/testdata/interop/torch_run/ (save_run) and its own logits for a fixed
   padded batch -> torch_run_expected.safetensors. webseq must load the folder and reproduce them.
B. The twin loads tests/testdata/interop/webseq_run/ (written by webseq) with load_run and records its
   logits -> webseq_run_expected.safetensors. webseq must reproduce them from the same folder, which
   shows the twin read webseq's file as webseq meant it.
"""
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "interop", "torch"))
from safetensors_io import save_file  # noqa: E402
from webseq_torch import Seq2Seq, load_run, make_config, save_run  # noqa: E402

OUT = os.path.join(ROOT, "tests", "testdata", "interop")


def batch(vocab):
    g = torch.Generator().manual_seed(5)
    src = torch.randint(3, vocab, (2, 6), generator=g)
    tgt = torch.randint(3, vocab, (2, 5), generator=g)
    src_mask = torch.ones(2, 6, dtype=torch.int32)
    tgt_mask = torch.ones(2, 5, dtype=torch.int32)
    src_mask[1, 4:] = 0
    src[1, 4:] = 0
    tgt_mask[1, 3:] = 0
    tgt[1, 3:] = 0
    return src, src_mask, tgt, tgt_mask


def record(model, config, path):
    src, src_mask, tgt, tgt_mask = batch(config["vocab_size"])
    with torch.no_grad():
        logits = model.double()(src, src_mask, tgt, tgt_mask).float()
    save_file({
        "input.src_ids": src.to(torch.int32), "input.src_mask": src_mask,
        "input.tgt_ids": tgt.to(torch.int32), "input.tgt_mask": tgt_mask,
        "output.logits": logits.contiguous(),
    }, path)


def main():
    torch.manual_seed(3)
    cfg = make_config({
        "vocab_size": 31, "d_model": 16, "n_heads": 4, "d_ff": 32, "n_encoder_layers": 2,
        "n_decoder_layers": 1, "max_position": 16, "dropout": 0.0, "drop_path": 0.0,
        "tie_embeddings": True,
    })
    model = Seq2Seq(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_run(model, cfg, os.path.join(OUT, "torch_run"))
    record(model, cfg, os.path.join(OUT, "torch_run_expected.safetensors"))

    model2, cfg2 = load_run(os.path.join(OUT, "webseq_run"))
    record(model2.eval(), cfg2, os.path.join(OUT, "webseq_run_expected.safetensors"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
