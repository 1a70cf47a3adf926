"""Builds tests/testdata/optim/adamw.json: AdamW, linear warmup schedule and clipping references.

Run: /usr/bin/python3 tools/make_optim_fixtures.py   (needs Debian's python3-torch)

Each case runs K optimizer steps of torch.optim.AdamW (CONTRACTS.md section 6) in float64, on
parameters whose initial values and per-step gradients are float32-representable, so a float32
implementation starts from exactly the stored numbers. Two param groups: the "decay" group uses
the case's weight_decay, the "no_decay" group (biases, gammas) uses 0.

Per step k = 0..K-1 the reference does, in this order:
    grad_norm[k] = torch.nn.utils.clip_grad_norm_(all params, max_grad_norm)   (if max_grad_norm;
                   total L2 norm over every parameter of both groups, BEFORE clipping; the grads
                   are scaled by min(1, max_norm / (norm + 1e-6)))
    lr_per_step[k] = lr * schedule(k)             (the lr the optimizer step uses)
    optimizer.step(); scheduler.step()
    after[k]     = the parameters after the step
schedule(k) is transformers' get_linear_schedule_with_warmup lambda, reimplemented below from
transformers/optimization.py (`_get_linear_schedule_with_warmup_lr_lambda`):
    if current_step < num_warmup_steps: return current_step / max(1, num_warmup_steps)
    return max(0.0, (num_training_steps - current_step) / max(1, num_training_steps - num_warmup_steps))
wrapped in torch.optim.lr_scheduler.LambdaLR, so the FIRST step uses factor schedule(0) (0 when
warming up). Without a schedule the factor is 1.
AdamW per parameter, t = k + 1 (check_by_hand replays it and must agree to 1e-12):
    p = p * (1 - lr * wd);  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
    p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
Moments and t advance even on a step whose lr is 0.

JSON layout: {"generator", "torch_version", "schedule_table": [{"num_warmup_steps", "num_training_steps",
"factors": [schedule(s) for s = 0..T+1]}], "cases": [{"name", "lr", "betas", "eps", "weight_decay",
"schedule": null | {"num_warmup_steps", "num_training_steps"}, "max_grad_norm": null | x, "steps": K,
"params": [{"name", "shape", "group": "decay"|"no_decay", "init": [row-major floats]}],
"grads": [[per-param flat grads] per step] (before clipping), "lr_per_step": [lr used by step k],
"grad_norm": [per step, pre-clip total norm], "after": [[per-param flat values] per step]}]}.
"""

import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "testdata", "optim", "adamw.json")


def linear_warmup_lambda(num_warmup_steps, num_training_steps):
    """transformers.get_linear_schedule_with_warmup's lr_lambda (transformers/optimization.py)."""

    def lr_lambda(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))

    return lr_lambda


PARAMS = [("w1", (3, 4), "decay"), ("b1", (4,), "no_decay"), ("w2", (2, 3), "decay"), ("gamma", (3,), "no_decay")]

CASES = [
    {"name": "constant_lr_weight_decay", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1,
     "schedule": None, "max_grad_norm": None, "steps": 5, "grad_scale": [1.0, 1.0, 1.0, 1.0, 1.0]},
    {"name": "warmup_and_clipping", "lr": 5e-3, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.05,
     "schedule": {"num_warmup_steps": 2, "num_training_steps": 6}, "max_grad_norm": 1.0, "steps": 5,
     "grad_scale": [3.0, 2.0, 0.05, 4.0, 1.0]},  # step 2's norm is below 1: no clipping there
    {"name": "schedule_reaches_zero", "lr": 2e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.01,
     "schedule": {"num_warmup_steps": 1, "num_training_steps": 4}, "max_grad_norm": None, "steps": 5,
     "grad_scale": [1.0, 0.5, 2.0, 1.0, 1.0]},
]


def f32(t):
    return t.float().double()


def run_case(case, seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(f32(torch.randn(shape, generator=g))) for _, shape, _ in PARAMS]
    init = [p.detach().clone() for p in params]
    decay = [p for p, (_, _, grp) in zip(params, PARAMS) if grp == "decay"]
    no_decay = [p for p, (_, _, grp) in zip(params, PARAMS) if grp == "no_decay"]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": case["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=case["lr"], betas=tuple(case["betas"]), eps=case["eps"],
    )
    sched = None
    if case["schedule"]:
        s = case["schedule"]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_lambda(s["num_warmup_steps"], s["num_training_steps"]))
    grads_out, lrs, norms, after = [], [], [], []
    for k in range(case["steps"]):
        grads = []
        for p in params:
            gk = torch.randn(p.shape, generator=g) * case["grad_scale"][k]
            if k == 0:
                gk.view(-1)[0] = 0.0  # an exact zero on the first step exercises the eps path
            grads.append(f32(gk))
        for p, gk in zip(params, grads):
            p.grad = gk.clone()
        if case["max_grad_norm"]:
            norm = torch.nn.utils.clip_grad_norm_(params, case["max_grad_norm"]).item()
        else:
            norm = torch.sqrt(sum((gk * gk).sum() for gk in grads)).item()
        lr_used = opt.param_groups[0]["lr"]
        assert lr_used == opt.param_groups[1]["lr"]
        opt.step()
        if sched:
            sched.step()
        grads_out.append([gk.reshape(-1).tolist() for gk in grads])
        lrs.append(lr_used)
        norms.append(norm)
        after.append([p.detach().reshape(-1).tolist() for p in params])
    out = {k: v for k, v in case.items() if k != "grad_scale"}
    out["params"] = [
        {"name": n, "shape": list(shape), "group": grp, "init": t.reshape(-1).tolist()}
        for (n, shape, grp), t in zip(PARAMS, init)
    ]
    out.update({"grads": grads_out, "lr_per_step": lrs, "grad_norm": norms, "after": after})
    return out


def check_by_hand(case):
    """Replays a case with the textbook AdamW (torch's algorithm, written out) and asserts equality."""
    b1, b2 = case["betas"]
    vals = [torch.tensor(p["init"]) for p in case["params"]]
    m = [torch.zeros_like(v) for v in vals]
    v2 = [torch.zeros_like(v) for v in vals]
    for k in range(case["steps"]):
        grads = [torch.tensor(gk) for gk in case["grads"][k]]
        if case["max_grad_norm"]:
            coef = min(1.0, case["max_grad_norm"] / (case["grad_norm"][k] + 1e-6))
            grads = [gk * coef for gk in grads]
        lr, t = case["lr_per_step"][k], k + 1
        for i, p in enumerate(case["params"]):
            wd = case["weight_decay"] if p["group"] == "decay" else 0.0
            vals[i] = vals[i] * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * grads[i]
            v2[i] = b2 * v2[i] + (1 - b2) * grads[i] * grads[i]
            denom = (v2[i].sqrt() / (1 - b2**t) ** 0.5) + case["eps"]
            vals[i] = vals[i] - (lr / (1 - b1**t)) * m[i] / denom
            ref = torch.tensor(case["after"][k][i])
            assert (vals[i] - ref).abs().max().item() < 1e-12, (case["name"], k, p["name"])


def main():
    torch.set_default_dtype(torch.float64)
    table = []
    for w, total in ((0, 5), (1, 4), (2, 6), (3, 3), (4, 10)):
        lam = linear_warmup_lambda(w, total)
        table.append({"num_warmup_steps": w, "num_training_steps": total, "factors": [lam(s) for s in range(total + 2)]})
    doc = {
        "generator": "tools/make_optim_fixtures.py (torch.optim.AdamW in float64)",
        "torch_version": torch.__version__,
        "schedule_table": table,
        "cases": [run_case(c, 7 + i) for i, c in enumerate(CASES)],
    }
    for c in doc["cases"]:
        check_by_hand(c)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{OUT}: {os.path.getsize(OUT)} bytes")
    for c in doc["cases"]:
        print(f"  {c['name']}: lr {c['lr_per_step']} grad_norm {[round(x, 3) for x in c['grad_norm']]}")


if __name__ == "__main__":
    main()
