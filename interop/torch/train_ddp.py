"""Continue training a webseq run in PyTorch with DistributedDataParallel, then hand it back.

Examples:
    # 2 processes on CPU (gloo) -- a smoke test
    torchrun --nproc_per_node 2 interop/torch/train_ddp.py --init-from runs/demo --data pairs.jsonl \
        --out runs/demo-torch --steps 100 --backend gloo
    # 8 GPUs on one node, bf16 autocast
    torchrun --nproc_per_node 8 interop/torch/train_ddp.py --init-from runs/demo --data train.jsonl \
        --out runs/demo-ddp --epochs 3 --batch-size 64 --lr 3e-4 --bf16

Reads runs/NAME (config.json, model.safetensors, tokenizer.json), trains, and writes a webseq run
folder (config.json, model.safetensors, tokenizer.json) on rank 0 that `webseq train --init-from`,
`webseq eval` and `webseq generate` read. Data: JSONL rows with `source_ids`/`target_ids` (token ids
without special tokens, CONTRACTS.md section 4), or `source`/`target` text when the `tokenizers`
package is installed (encoded with the run's tokenizer.json, without special tokens).
Optimizer state is not carried over in either direction (webseq's optimizer.safetensors is not read).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from webseq_torch import load_run, save_run, seq2seq_loss  # noqa: E402


def read_pairs(path, run_dir):
    """[(source_ids, target_ids)] from JSONL: ids directly, or text through tokenizer.json."""
    tok = None
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "source_ids" in row and "target_ids" in row:
                pairs.append((list(row["source_ids"]), list(row["target_ids"])))
                continue
            if tok is None:
                try:
                    from tokenizers import Tokenizer
                except ImportError:
                    raise SystemExit(f"{path}:{line_no}: text rows need the 'tokenizers' package (or use source_ids/target_ids)")
                tok = Tokenizer.from_file(os.path.join(run_dir, "tokenizer.json"))
            enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
            pairs.append((enc(row["source"]), enc(row["target"])))
    return pairs


def collate(batch, cfg, max_length):
    """CONTRACTS.md section 4: encoder ids + eos, [start] + target, target + eos; right-padded."""
    pad, eos, start = cfg["pad_token_id"], cfg["eos_token_id"], cfg["decoder_start_token_id"]
    enc = [src[: max_length - 1] + [eos] for src, _ in batch]
    dec_in = [([start] + tgt)[:max_length] for _, tgt in batch]
    dec_tgt = [tgt[: max_length - 1] + [eos] for _, tgt in batch]
    S = max(len(x) for x in enc)
    T = max(max(len(x) for x in dec_in), max(len(x) for x in dec_tgt))

    def pad_to(rows, L):
        ids = torch.full((len(rows), L), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    src, src_mask = pad_to(enc, S)
    tgt, tgt_mask = pad_to(dec_in, T)
    target, _ = pad_to(dec_tgt, T)
    return src, src_mask, tgt, tgt_mask, target


def main():
    ap = argparse.ArgumentParser(description="Continue training a webseq run with PyTorch DDP.")
    ap.add_argument("--init-from", required=True, help="webseq run folder to start from")
    ap.add_argument("--data", required=True, help="JSONL training pairs")
    ap.add_argument("--out", required=True, help="run folder to write (rank 0)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--batch-size", type=int, default=32, help="per process")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--backend", default="nccl" if torch.cuda.is_available() else "gloo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    # run directly with python (not torchrun): one process, a world of one
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device(f"cuda:{local}" if args.backend == "nccl" else "cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    torch.manual_seed(args.seed + rank)

    model, cfg = load_run(args.init_from)
    max_length = min(args.max_length, cfg["max_position"])
    model = model.to(dev).train()
    ddp = DDP(model, device_ids=[local] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr)

    pairs = read_pairs(args.data, args.init_from)
    sampler = DistributedSampler(pairs, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(pairs, batch_size=args.batch_size, sampler=sampler,
                        collate_fn=lambda b: collate(b, cfg, max_length))
    total = args.steps or args.epochs * len(loader)
    warm = args.warmup

    def lr_lambda(s):  # transformers' get_linear_schedule_with_warmup (CONTRACTS.md section 6)
        if s < warm:
            return s / max(1, warm)
        return max(0.0, (total - s) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    step = 0
    for epoch in range(math.ceil(total / max(1, len(loader)))):
        sampler.set_epoch(epoch)
        for batch in loader:
            src, src_mask, tgt, tgt_mask, target = (x.to(dev) for x in batch)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = ddp(src, src_mask, tgt, tgt_mask)
            loss = seq2seq_loss(logits, target, cfg["pad_token_id"], args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            if rank == 0 and (step % 50 == 0 or step == total):
                print(json.dumps({"step": step, "epoch": epoch, "loss": loss.item(), "lr": sched.get_last_lr()[0]}),
                      file=sys.stderr)
            if step >= total:
                break
        if step >= total:
            break

    if rank == 0:
        tok = os.path.join(args.init_from, "tokenizer.json")
        save_run(model, cfg, args.out, tokenizer_json_path=tok if os.path.exists(tok) else None)
        print(json.dumps({"out": args.out, "steps": step, "world_size": world}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
