"""PyTorch baseline for webseq's training benchmark: the same model and workload, timed in PyTorch.

Examples:
    OMP_NUM_THREADS=2 /usr/bin/python3 bench/torch_baseline.py --preset tiny --batch-size 16 --src-len 32 --tgt-len 32
    /usr/bin/python3 bench/torch_baseline.py --preset base --device cuda --bf16 --steps 50

Workload: the webseq model of interop/torch/webseq_torch.py with a preset's dimensions
(tiny d64 h4 ff256 2+2; small d256 h4 ff1024 3+3 = CONTRACTS.md defaults; base d512 h8 ff2048 6+6;
vocab 8000; the preset's dropout/drop_path, so training mode costs what it costs in webseq),
random full-length token batches from a seeded generator (no padding), loss =
CrossEntropyLoss(ignore_index=pad), backward, AdamW step (lr 1e-4, weight decay 0.01 with the
contract's no-decay groups) every iteration. --warmup-steps iterations are run first and not timed.
TF32 is OFF unless --tf32; --bf16 runs forward and loss under torch.autocast(bfloat16).

Prints ONE JSON line: {"impl": "pytorch", "kind": "train", "device", "preset", "batch_size",
"src_len", "tgt_len", "tokens_per_s" (target tokens per second), "step_ms", "peak_bytes"
(torch.cuda.max_memory_allocated on cuda; peak RSS of the process on cpu), ...}.
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop", "torch"))

import torch  # noqa: E402

from webseq_torch import PRESETS, Seq2Seq, make_config, seq2seq_loss  # noqa: E402


def device_name_of(dev):
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{torch.get_num_threads()} threads"


def time_loop(fn, dev, min_time_s=0.5, warmup=3):
    """Mean seconds per call of fn, after warm-up, over at least min_time_s."""
    for _ in range(warmup):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    iters, t0 = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time_s and iters >= 3:
            return elapsed / iters, iters


def ops_lines(dev, sizes):
    """The same kernel lines as webseq's bench/ops_bench.ts: square fp32 matmuls and causal
    attention forward+backward (d_model 256, 4 heads) with dense-equivalent GFLOP/s."""
    out = []
    name = device_name_of(dev)
    g = torch.Generator().manual_seed(1)
    for n in sizes:
        if dev.type == "cpu" and n > 2048:
            continue
        a = torch.randn(n, n, generator=g).to(dev)
        b = torch.randn(n, n, generator=g).to(dev)
        s, iters = time_loop(lambda: torch.mm(a, b), dev)
        out.append({"impl": "pytorch", "kind": "matmul", "device": name, "label": f"square{n}",
                    "m": n, "k": n, "n": n, "iters": iters, "ms": round(s * 1e3, 4),
                    "gflops": round(2 * n ** 3 / s / 1e9, 2)})
    H, D = 4, 64
    shapes = [(16, 32), (16, 128), (8, 512)] if dev.type == "cuda" else [(2, 16)]
    for B, T in shapes:
        q, k, v = (torch.randn(B, H, T, D, generator=g).to(dev).requires_grad_() for _ in range(3))
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()

        def attn():
            if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
                y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                w = (q @ k.transpose(-1, -2)) / D ** 0.5
                y = w.masked_fill(~causal, float("-inf")).softmax(-1) @ v
            y.sum().backward()
            for t in (q, k, v):
                t.grad = None

        s, iters = time_loop(attn, dev)
        out.append({"impl": "pytorch", "kind": "attention", "device": name, "label": "causal_self_fwd_bwd",
                    "B": B, "H": H, "T": T, "D": D, "iters": iters, "ms": round(s * 1e3, 4),
                    "gflops_dense_equiv": round(3 * 4 * B * H * T * T * D / s / 1e9, 2)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch training-throughput baseline for webseq presets.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    ap.add_argument("--warmup-ms", type=float, default=0.0,
                    help="then more untimed steps, back to back, until this many ms have passed "
                         "(an idle GPU's clocks come up with load)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off by default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", action="store_true",
                    help="first print kernel lines: matmul GFLOP/s at --sizes and attention fwd+bwd")
    ap.add_argument("--sizes", default="256,1024,4096", help="square matmul sizes for --ops")
    ap.add_argument("--config", help="a webseq config.json instead of --preset (its vocab_size wins)")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_baseline: --device cuda but torch.cuda.is_available() is false", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)

    if args.ops:
        for line in ops_lines(dev, [int(x) for x in args.sizes.split(",") if x]):
            print(json.dumps(line), flush=True)
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            base = json.load(f)
        preset_name = args.config
    else:
        base = {**PRESETS[args.preset], "vocab_size": args.vocab_size}
        preset_name = args.preset
    cfg = make_config({**base, "max_position": max(base.get("max_position", 512), args.src_len, args.tgt_len)})
    model = Seq2Seq(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.param_groups(0.01), lr=1e-4)
    n_params = sum(p.numel() for p in model.parameters())

    g = torch.Generator().manual_seed(args.seed)
    B, S, T, V = args.batch_size, args.src_len, args.tgt_len, cfg["vocab_size"]

    def make_batch():
        src = torch.randint(3, V, (B, S), generator=g)
        tgt = torch.randint(3, V, (B, T + 1), generator=g)
        tgt[:, 0] = cfg["decoder_start_token_id"]
        ones_s = torch.ones(B, S, dtype=torch.long)
        ones_t = torch.ones(B, T, dtype=torch.long)
        return [x.to(dev) for x in (src, ones_s, tgt[:, :-1].contiguous(), ones_t, tgt[:, 1:].contiguous())]

    def step(batch):
        src, src_mask, tgt_in, tgt_mask, target = batch
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(src, src_mask, tgt_in, tgt_mask)
            loss = seq2seq_loss(logits, target, cfg["pad_token_id"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    batches = [make_batch() for _ in range(min(args.steps + args.warmup_steps, 8))]
    warmup = args.warmup_steps
    for i in range(warmup):
        step(batches[i % len(batches)])
    w0 = time.perf_counter()
    while 1000.0 * (time.perf_counter() - w0) < args.warmup_ms:
        step(batches[warmup % len(batches)])
        warmup += 1
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(batches[i % len(batches)])
    final_loss = float(loss.item())  # also synchronises
    sync()
    elapsed = time.perf_counter() - t0

    reserved = None
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
        reserved = torch.cuda.max_memory_reserved()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    device_name = device_name_of(dev)
    print(json.dumps({
        "impl": "pytorch", "kind": "train", "device": device_name, "preset": preset_name,
        "batch_size": B, "src_len": S, "tgt_len": T,
        "tokens_per_s": B * T * args.steps / elapsed, "step_ms": 1000.0 * elapsed / args.steps,
        "peak_bytes": int(peak),
        **({"peak_reserved_bytes": int(reserved)} if reserved is not None else {}),
        "steps": args.steps, "warmup_steps": warmup,
        "params": n_params, "bf16": args.bf16, "tf32": args.tf32, "loss": final_loss,
        "torch_version": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
