#!/usr/bin/python3
"""Generates tests/testdata/ops/torch_ops.json: PyTorch float64 forward values
and gradients for the ops of ops/softmax.ts, ops/layer_norm.ts,
ops/embedding.ts and ops/cross_entropy.ts (the golden tests in ops/*_test.ts).

    /usr/bin/python3 tools/make_op_fixtures.py

Needs Debian's python3-torch (`apt-get install -y python3-torch`).
"""

import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "testdata", "ops", "torch_ops.json")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def rand(*shape, scale=1.0):
    return (torch.rand(*shape, dtype=torch.float64) * 2 - 1) * scale


def softmax_cases():
    out = []
    for shape, scale in [((3, 7), 3.0), ((2, 9), 50.0), ((1, 300), 60.0)]:
        x = rand(*shape, scale=scale).requires_grad_()
        dy = rand(*shape)
        y = F.softmax(x, dim=-1)
        (dx,) = torch.autograd.grad(y, x, dy)
        x2 = x.detach().clone().requires_grad_()
        ly = F.log_softmax(x2, dim=-1)
        (ldx,) = torch.autograd.grad(ly, x2, dy)
        out.append({"shape": list(shape), "x": flat(x), "dy": flat(dy), "softmax": flat(y),
                    "softmax_dx": flat(dx), "log_softmax": flat(ly), "log_softmax_dx": flat(ldx)})
    return out


def layer_norm_cases():
    out = []
    for shape, eps, offset in [((3, 7), 1e-5, 0.0), ((2, 2, 16), 1e-3, 5.0), ((4, 1), 1e-5, 0.0)]:
        C = shape[-1]
        x = (rand(*shape, scale=2.0) + offset).requires_grad_()
        w = rand(C).requires_grad_()
        b = rand(C).requires_grad_()
        dy = rand(*shape)
        y = F.layer_norm(x, [C], w, b, eps)
        dx, dw, db = torch.autograd.grad(y, (x, w, b), dy)
        out.append({"shape": list(shape), "eps": eps, "x": flat(x), "weight": flat(w),
                    "bias": flat(b), "dy": flat(dy), "y": flat(y), "dx": flat(dx),
                    "dweight": flat(dw), "dbias": flat(db)})
    return out


def embedding_cases():
    V, C = 6, 3
    w = rand(V, C).requires_grad_()
    ids = torch.tensor([[0, 3, 3, 1], [0, 0, 5, 3]])
    dy = rand(2, 4, C)
    y = F.embedding(ids, w)
    (dw,) = torch.autograd.grad(y, w, dy)
    return [{"V": V, "C": C, "ids_shape": [2, 4], "weight": flat(w), "ids": ids.reshape(-1).tolist(),
             "dy": flat(dy), "y": flat(y), "dweight": flat(dw)}]


def cross_entropy_cases():
    out = []
    specs = [
        # (N, V, scale, ignore_index, label_smoothing, targets)
        (6, 7, 3.0, 0, 0.1, [1, 0, 6, 2, 0, 3]),
        (5, 11, 60.0, -100, 0.0, [10, -100, 0, 4, 4]),
        (4, 300, 80.0, 2, 0.2, [299, 2, 0, 150]),
    ]
    for N, V, scale, ignore, ls, targets in specs:
        x = rand(N, V, scale=scale).requires_grad_()
        t = torch.tensor(targets)
        loss = F.cross_entropy(x, t, ignore_index=ignore, label_smoothing=ls)
        (dx,) = torch.autograd.grad(loss, x)
        out.append({"N": N, "V": V, "ignore_index": ignore, "label_smoothing": ls,
                    "logits": flat(x), "targets": targets, "loss": loss.item(), "dlogits": flat(dx)})
    return out


data = {
    "reference": f"torch {torch.__version__}, float64",
    "softmax": softmax_cases(),
    "layer_norm": layer_norm_cases(),
    "embedding": embedding_cases(),
    "cross_entropy": cross_entropy_cases(),
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(data, f)
print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
