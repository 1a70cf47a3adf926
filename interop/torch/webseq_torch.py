"""webseq's seq2seq transformer as a PyTorch nn.Module: the twin of nn/ in TypeScript.

It follows ../../CONTRACTS.md sections 1-3 (shared/CONTRACTS.md) and pins the details those
sections leave open. The TypeScript model follows the same points; golden fixtures
(tools/make_golden_fixtures.py -> tests/testdata/golden/) are computed with this file.

Example:
    import sys; sys.path.insert(0, "interop/torch")
    from webseq_torch import load_run, save_run, seq2seq_loss
    model, config = load_run("runs/demo")            # config.json + model.safetensors
    logits = model(src_ids, src_mask, tgt_ids, tgt_mask)   # [B, T, V]
    save_run(model, config, "runs/demo-torch", tokenizer_json_path="runs/demo/tokenizer.json")

Semantics (B batch, S source length, T target length, C d_model, H heads, D = C/H, F d_ff, V vocab):

1. Embedding: x = embed(ids) * sqrt(C) + PE[p] for positions p = 0..L-1 (padding does not
   shift positions; sequences are right-padded), then dropout(x). Sinusoidal
   PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)) (computed in
   float64, then cast); it is neither a parameter nor a buffer and is not saved. Learned PE is the
   parameter `pos.weight` [max_position, C]. L > max_position is an error.
2. Blocks are pre-LN. Each sublayer is
       x = x + DropPath(gamma * Dropout(Sublayer(LayerNorm(x))))
   i.e. dropout (rate `dropout`) acts on the sublayer output first, then the LayerScale
   gamma (only when layer_scale_init is not null; otherwise the factor is absent), then
   DropPath. Encoder block: self-attention (norm1, gamma1), FFN (norm2, gamma2).
   Decoder block: causal self-attention (norm1, gamma1), cross-attention over the encoder
   output (norm2, gamma2), FFN (norm3, gamma3).
3. The encoder ends with LayerNorm `encoder.norm`; the decoder ends with LayerNorm
   `decoder.norm` and then `lm_head` without bias: logits = norm(x) @ W^T, W [V, C]. When
   tie_embeddings is true, W is decoder.embed.weight (the encoder has its own embedding);
   the module then has no `decoder.lm_head` at all, so state_dict() keys equal the file's.
4. LayerNorm: (x - mean) / sqrt(var + norm_eps) * weight + bias, biased variance.
5. Attention: q, k, v = q_proj(xq), k_proj(xkv), v_proj(xkv) (all with bias), split into H
   heads of D channels (channel c belongs to head c // D). scores = q k^T / sqrt(D)
   [B, H, Tq, Tk]. Disallowed keys -- key padding (attention_mask == 0; self- and
   cross-attention) and, in decoder self-attention, keys j > i for query i -- have their
   score REPLACED (masked_fill, not added) by the dtype's lowest finite value
   (torch.finfo(dtype).min; any value <= -1e9 gives identical results in float32).
   probs = softmax(scores) over keys, then attention dropout on probs; out = out_proj(probs v).
   Consequence, pinned: a query row whose keys are ALL disallowed (only possible when a whole
   source row is padding) gets uniform weights over all Tk keys -- finite, never NaN. Query
   rows at padding positions are computed like any other row (their logits are defined and
   finite; the loss ignores them).
6. FFN: gelu -> fc2(Dropout(gelu(fc1(x)))), exact erf GELU, with biases;
   swiglu -> w_down(silu(w_gate(x)) * w_up(x)), no biases, no inner dropout.
7. DropPath (stochastic depth): in training with rate p > 0, each batch row's branch is
   kept with probability 1 - p and then divided by 1 - p; identity in eval mode.
   Dropout, attention dropout and DropPath act only in training mode (model.train()).
8. Loss: CrossEntropyLoss(ignore_index=pad_token_id, label_smoothing=ls), mean over non-pad
   targets (seq2seq_loss below).

Initialisation (Seq2Seq.reset_parameters; not a contract): Linear weights Xavier-uniform,
biases zero; token embeddings N(0, 1/C) so embed * sqrt(C) has unit variance; learned PE
N(0, 0.02^2); LayerNorm weight 1, bias 0; gammas = layer_scale_init.
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # imported as part of a package (interop.torch.webseq_torch)
    from .safetensors_io import atomic_write_bytes, load_file, save_file
except ImportError:  # imported with interop/torch on sys.path
    from safetensors_io import atomic_write_bytes, load_file, save_file

# CONTRACTS.md section 1, in its order.
DEFAULT_CONFIG = {
    "format": "webseq",
    "format_version": 1,
    "vocab_size": 8000,
    "d_model": 256,
    "n_heads": 4,
    "d_ff": 1024,
    "n_encoder_layers": 3,
    "n_decoder_layers": 3,
    "ffn_activation": "gelu",
    "positional_encoding": "sinusoidal",
    "max_position": 512,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "drop_path": 0.1,
    "layer_scale_init": 0.1,
    "norm_eps": 1e-5,
    "tie_embeddings": True,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}

# Named presets of nn/config.ts (vocab_size comes from the tokenizer).
PRESETS = {
    "tiny": {
        "d_model": 64, "n_heads": 4, "d_ff": 256, "n_encoder_layers": 2, "n_decoder_layers": 2,
        "max_position": 128, "dropout": 0.1, "drop_path": 0.0,
    },
    "small": {},
    "base": {"d_model": 512, "n_heads": 8, "d_ff": 2048, "n_encoder_layers": 6, "n_decoder_layers": 6},
}

_INT_FIELDS = (
    "vocab_size", "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers",
    "max_position", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
)


def make_config(overrides=None, source="config"):
    """Returns a full, validated config dict: the defaults updated by overrides."""
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in DEFAULT_CONFIG]
    if unknown:
        raise ValueError(f"{source}: unknown field {unknown[0]!r}")
    cfg = {**DEFAULT_CONFIG, **overrides}
    if cfg["format"] != "webseq":
        raise ValueError(f"{source}: field 'format' must be 'webseq'")
    if cfg["format_version"] != 1:
        raise ValueError(f"{source}: unsupported format_version {cfg['format_version']!r}")
    for f in _INT_FIELDS:
        if type(cfg[f]) is not int or cfg[f] < 0:
            raise ValueError(f"{source}: field {f!r} must be a non-negative integer")
    for f in ("vocab_size", "d_model", "n_heads", "d_ff", "max_position"):
        if cfg[f] < 1:
            raise ValueError(f"{source}: field {f!r} must be at least 1")
    if cfg["d_model"] % cfg["n_heads"] != 0:
        raise ValueError(f"{source}: field 'd_model' must be divisible by 'n_heads'")
    if cfg["ffn_activation"] not in ("gelu", "swiglu"):
        raise ValueError(f"{source}: field 'ffn_activation' must be 'gelu' or 'swiglu'")
    if cfg["positional_encoding"] not in ("sinusoidal", "learned"):
        raise ValueError(f"{source}: field 'positional_encoding' must be 'sinusoidal' or 'learned'")
    for f in ("dropout", "attention_dropout", "drop_path"):
        if not isinstance(cfg[f], (int, float)) or not 0 <= cfg[f] < 1:
            raise ValueError(f"{source}: field {f!r} must be in [0, 1)")
    ls = cfg["layer_scale_init"]
    if ls is not None and (isinstance(ls, bool) or not isinstance(ls, (int, float))):
        raise ValueError(f"{source}: field 'layer_scale_init' must be a number or null")
    if not isinstance(cfg["norm_eps"], (int, float)) or cfg["norm_eps"] <= 0:
        raise ValueError(f"{source}: field 'norm_eps' must be positive")
    if not isinstance(cfg["tie_embeddings"], bool):
        raise ValueError(f"{source}: field 'tie_embeddings' must be true or false")
    return cfg


def sinusoidal_table(max_position, d_model):
    """PE [max_position, C] in float64: PE[p,2i] = sin(p/10000^(2i/C)), PE[p,2i+1] = cos(...)."""
    pos = torch.arange(max_position, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d_model)
    pe = torch.zeros(max_position, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per batch row, rescales by 1/(1-p)."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):  # x: [B, L, C]
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device)
        keep.bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class MultiHeadAttention(nn.Module):
    """softmax(q k^T / sqrt(D) masked) v with q/k/v/out projections (with biases)."""

    def __init__(self, d_model, n_heads, attention_dropout):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.attn_drop = nn.Dropout(attention_dropout)

    def forward(self, xq, xkv, key_mask, causal=False):
        # xq: [B, Tq, C], xkv: [B, Tk, C], key_mask: [B, Tk] (nonzero = real token)
        B, Tq, C = xq.shape
        Tk = xkv.shape[1]
        H = self.n_heads
        D = C // H
        q = self.q_proj(xq).view(B, Tq, H, D).transpose(1, 2)  # [B, H, Tq, D]
        k = self.k_proj(xkv).view(B, Tk, H, D).transpose(1, 2)  # [B, H, Tk, D]
        v = self.v_proj(xkv).view(B, Tk, H, D).transpose(1, 2)  # [B, H, Tk, D]
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D)  # [B, H, Tq, Tk]
        allowed = (key_mask != 0)[:, None, None, :]  # [B, 1, 1, Tk]
        if causal:
            tri = torch.ones(Tq, Tk, dtype=torch.bool, device=xq.device).tril()
            allowed = allowed & tri[None, None]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = self.attn_drop(torch.softmax(scores, dim=-1))
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, Tq, C)  # [B, Tq, C]
        return self.out_proj(out)


class FeedForward(nn.Module):
    """gelu: fc2(dropout(gelu(fc1 x))); swiglu: w_down(silu(w_gate x) * w_up x)."""

    def __init__(self, d_model, d_ff, activation, dropout):
        super().__init__()
        self.activation = activation
        if activation == "gelu":
            self.fc1 = nn.Linear(d_model, d_ff)
            self.fc2 = nn.Linear(d_ff, d_model)
            self.drop = nn.Dropout(dropout)
        else:
            self.w_gate = nn.Linear(d_model, d_ff, bias=False)
            self.w_up = nn.Linear(d_model, d_ff, bias=False)
            self.w_down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):  # x: [B, L, C]
        if self.activation == "gelu":
            return self.fc2(self.drop(F.gelu(self.fc1(x))))
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


def _gamma(cfg, d):
    ls = cfg["layer_scale_init"]
    return None if ls is None else nn.Parameter(torch.full((d,), float(ls)))


class _Block(nn.Module):
    """Shared residual step: x + DropPath(gamma * Dropout(sublayer(LN(x))))."""

    def _residual(self, x, y, gamma):
        y = self.drop(y)
        if gamma is not None:
            y = gamma * y
        return x + self.drop_path(y)


class EncoderBlock(_Block):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.norm1 = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.self_attn = MultiHeadAttention(d, cfg["n_heads"], cfg["attention_dropout"])
        self.gamma1 = _gamma(cfg, d)
        self.norm2 = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.ffn = FeedForward(d, cfg["d_ff"], cfg["ffn_activation"], cfg["dropout"])
        self.gamma2 = _gamma(cfg, d)
        self.drop = nn.Dropout(cfg["dropout"])
        self.drop_path = DropPath(cfg["drop_path"])

    def forward(self, x, src_mask):  # x: [B, S, C]
        h = self.norm1(x)
        x = self._residual(x, self.self_attn(h, h, src_mask), self.gamma1)
        x = self._residual(x, self.ffn(self.norm2(x)), self.gamma2)
        return x


class DecoderBlock(_Block):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.norm1 = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.self_attn = MultiHeadAttention(d, cfg["n_heads"], cfg["attention_dropout"])
        self.gamma1 = _gamma(cfg, d)
        self.norm2 = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.cross_attn = MultiHeadAttention(d, cfg["n_heads"], cfg["attention_dropout"])
        self.gamma2 = _gamma(cfg, d)
        self.norm3 = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.ffn = FeedForward(d, cfg["d_ff"], cfg["ffn_activation"], cfg["dropout"])
        self.gamma3 = _gamma(cfg, d)
        self.drop = nn.Dropout(cfg["dropout"])
        self.drop_path = DropPath(cfg["drop_path"])

    def forward(self, x, tgt_mask, memory, src_mask):  # x: [B, T, C], memory: [B, S, C]
        h = self.norm1(x)
        x = self._residual(x, self.self_attn(h, h, tgt_mask, causal=True), self.gamma1)
        x = self._residual(x, self.cross_attn(self.norm2(x), memory, src_mask), self.gamma2)
        x = self._residual(x, self.ffn(self.norm3(x)), self.gamma3)
        return x


class _Stack(nn.Module):
    """Token embedding * sqrt(C) + positional encoding, then dropout."""

    def _init_embedding(self, cfg):
        d = cfg["d_model"]
        self.d_model = d
        self.max_position = cfg["max_position"]
        self.embed = nn.Embedding(cfg["vocab_size"], d)
        if cfg["positional_encoding"] == "learned":
            self.pos = nn.Embedding(cfg["max_position"], d)
        else:
            self.pos = None
        self._pe_cache = {}  # (device, dtype) -> sinusoidal table; not a parameter, not saved
        self.drop = nn.Dropout(cfg["dropout"])

    def _sinusoidal(self, x):
        key = (x.device, x.dtype)
        if key not in self._pe_cache:
            self._pe_cache[key] = sinusoidal_table(self.max_position, self.d_model).to(x.device, x.dtype)
        return self._pe_cache[key]

    def _embed(self, ids):  # ids: [B, L] -> [B, L, C]
        L = ids.shape[1]
        if L > self.max_position:
            raise ValueError(f"sequence length {L} exceeds max_position {self.max_position}")
        x = self.embed(ids) * math.sqrt(self.d_model)
        pe = self.pos.weight[:L] if self.pos is not None else self._sinusoidal(x)[:L]
        return self.drop(x + pe[None])


class Encoder(_Stack):
    def __init__(self, cfg):
        super().__init__()
        self._init_embedding(cfg)
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg["n_encoder_layers"]))
        self.norm = nn.LayerNorm(cfg["d_model"], eps=cfg["norm_eps"])

    def forward(self, src_ids, src_mask):  # -> memory [B, S, C]
        x = self._embed(src_ids)
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.norm(x)


class Decoder(_Stack):
    def __init__(self, cfg):
        super().__init__()
        self._init_embedding(cfg)
        self.layers = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg["n_decoder_layers"]))
        self.norm = nn.LayerNorm(cfg["d_model"], eps=cfg["norm_eps"])
        self.tied = cfg["tie_embeddings"]
        if not self.tied:
            self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)

    @property
    def lm_head_weight(self):
        """[V, C]: decoder.embed.weight when tied, else decoder.lm_head.weight."""
        return self.embed.weight if self.tied else self.lm_head.weight

    def forward(self, tgt_ids, tgt_mask, memory, src_mask):  # -> logits [B, T, V]
        x = self._embed(tgt_ids)
        for layer in self.layers:
            x = layer(x, tgt_mask, memory, src_mask)
        return F.linear(self.norm(x), self.lm_head_weight)


class Seq2Seq(nn.Module):
    """The webseq encoder-decoder. Seq2Seq(config_dict); forward -> logits [B, T, V]."""

    def __init__(self, config):
        super().__init__()
        self.config = make_config(config)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        cfg = self.config
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for stack in (self.encoder, self.decoder):
            nn.init.normal_(stack.embed.weight, 0.0, cfg["d_model"] ** -0.5)
            if stack.pos is not None:
                nn.init.normal_(stack.pos.weight, 0.0, 0.02)
        if cfg["layer_scale_init"] is not None:
            for name, p in self.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("gamma"):
                    p.fill_(float(cfg["layer_scale_init"]))

    def encode(self, src_ids, src_mask):
        """src_ids, src_mask: [B, S] -> memory [B, S, C]."""
        return self.encoder(src_ids, src_mask)

    def decode(self, tgt_ids, tgt_mask, memory, src_mask):
        """tgt_ids, tgt_mask: [B, T]; memory [B, S, C] -> logits [B, T, V]."""
        return self.decoder(tgt_ids, tgt_mask, memory, src_mask)

    def forward(self, src_ids, src_mask, tgt_ids, tgt_mask):
        return self.decode(tgt_ids, tgt_mask, self.encode(src_ids, src_mask), src_mask)

    def param_groups(self, weight_decay):
        """AdamW groups per CONTRACTS.md section 6: no decay on biases, norm weights, gammas."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = ".norm" in name or name.startswith("norm")
            if leaf == "bias" or leaf.startswith("gamma") or is_norm:
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def greedy_generate(self, src_ids, src_mask, max_new_tokens=64):
        """Greedy decoding without a cache (simple reference): returns [B, <=max_new_tokens] ids."""
        cfg = self.config
        memory = self.encode(src_ids, src_mask)
        B = src_ids.shape[0]
        ys = torch.full((B, 1), cfg["decoder_start_token_id"], dtype=torch.long, device=src_ids.device)
        done = torch.zeros(B, dtype=torch.bool, device=src_ids.device)
        for _ in range(min(max_new_tokens, cfg["max_position"] - 1)):
            logits = self.decode(ys, torch.ones_like(ys), memory, src_mask)
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, cfg["pad_token_id"]), nxt)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == cfg["eos_token_id"]
            if bool(done.all()):
                break
        return ys[:, 1:]


def seq2seq_loss(logits, target_ids, pad_token_id, label_smoothing=0.0):
    """Mean cross-entropy over non-pad targets (CONTRACTS.md section 5). logits [B, T, V]."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        target_ids.reshape(-1).long(),
        ignore_index=pad_token_id,
        label_smoothing=label_smoothing,
    )


def contract_names(config):
    """The exact safetensors keys of CONTRACTS.md section 3 for a config, in file order."""
    cfg = make_config(config)
    ls = cfg["layer_scale_init"] is not None
    ffn = ["ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias"] if cfg["ffn_activation"] == "gelu" \
        else ["ffn.w_gate.weight", "ffn.w_up.weight", "ffn.w_down.weight"]
    norm = lambda n: [f"{n}.weight", f"{n}.bias"]  # noqa: E731
    attn = lambda n: [f"{n}.{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")]  # noqa: E731
    names = []
    for side, n_layers in (("encoder", cfg["n_encoder_layers"]), ("decoder", cfg["n_decoder_layers"])):
        names.append(f"{side}.embed.weight")
        if cfg["positional_encoding"] == "learned":
            names.append(f"{side}.pos.weight")
        for i in range(n_layers):
            p = f"{side}.layers.{i}."
            if side == "encoder":
                parts = norm("norm1") + attn("self_attn") + (["gamma1"] if ls else []) \
                    + norm("norm2") + ffn + (["gamma2"] if ls else [])
            else:
                parts = norm("norm1") + attn("self_attn") + (["gamma1"] if ls else []) \
                    + norm("norm2") + attn("cross_attn") + (["gamma2"] if ls else []) \
                    + norm("norm3") + ffn + (["gamma3"] if ls else [])
            names += [p + part for part in parts]
        names += norm(f"{side}.norm")
    if not cfg["tie_embeddings"]:
        names.append("decoder.lm_head.weight")
    return names


def _unwrap(model):
    """Strips DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def file_state_dict(model):
    """{contract name: float32 contiguous CPU tensor}: what model.safetensors holds."""
    model = _unwrap(model)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}


def load_file_state_dict(model, tensors, source="model.safetensors"):
    """Copies {name: tensor} (F32/F16/BF16) into the model; names and shapes must match exactly."""
    model = _unwrap(model)
    own = model.state_dict()
    tensors = dict(tensors)
    if model.config["tie_embeddings"] and "decoder.lm_head.weight" in tensors:
        head = tensors.pop("decoder.lm_head.weight")
        emb = tensors.get("decoder.embed.weight")
        if emb is None or head.shape != emb.shape or not torch.equal(head.float(), emb.float()):
            raise ValueError(f"{source}: config ties embeddings but decoder.lm_head.weight differs from decoder.embed.weight")
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing:
        raise ValueError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise ValueError(f"{source}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for k, v in own.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(f"{source}: tensor {k!r} has shape {list(tensors[k].shape)}, expected {list(v.shape)}")
        if not tensors[k].is_floating_point():
            raise ValueError(f"{source}: tensor {k!r} is not a float tensor")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(tensors[k].to(v.dtype))


def load_run(run_dir, map_location="cpu"):
    """Reads run_dir/config.json and run_dir/model.safetensors -> (model in eval mode, config)."""
    cfg_path = os.path.join(run_dir, "config.json")
    with open(cfg_path, "r", encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except ValueError as e:
            raise ValueError(f"{cfg_path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    config = make_config(raw, source=cfg_path)
    model = Seq2Seq(config)
    st_path = os.path.join(run_dir, "model.safetensors")
    load_file_state_dict(model, load_file(st_path), source=st_path)
    return model.to(map_location).eval(), config


def save_run(model, config=None, run_dir=".", tokenizer_json_path=None):
    """Writes config.json, model.safetensors (F32) and optionally tokenizer.json into run_dir, atomically.

    Call it on rank 0 only under DDP; the DDP/compile wrapper is stripped. Under FSDP gather a full
    state dict first (see README.md). Other files in run_dir (optimizer state, metrics) are left as they are.
    """
    model = _unwrap(model)
    config = make_config(config if config is not None else model.config)
    if config != model.config:
        raise ValueError("save_run: config does not match the model's config")
    os.makedirs(run_dir, exist_ok=True)
    text = json.dumps({k: config[k] for k in DEFAULT_CONFIG}, indent=2) + "\n"
    atomic_write_bytes(os.path.join(run_dir, "config.json"), text.encode("utf-8"))
    save_file(file_state_dict(model), os.path.join(run_dir, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_json_path is not None:
        dst = os.path.join(run_dir, "tokenizer.json")
        if os.path.abspath(tokenizer_json_path) != os.path.abspath(dst):
            with open(tokenizer_json_path, "rb") as f:
                atomic_write_bytes(dst, f.read())


__all__ = [
    "DEFAULT_CONFIG", "PRESETS", "make_config", "sinusoidal_table", "Seq2Seq", "seq2seq_loss",
    "contract_names", "file_state_dict", "load_file_state_dict", "load_run", "save_run",
]
