"""GPT-2 written from scratch, with the module names the lab uses.

    GPTModel
    ├── tok_emb, pos_emb, drop_emb
    ├── trf_blocks: n_layers x TransformerBlock
    │     ├── norm1 -> att (W_query, W_key, W_value, out_proj) -> drop_resid  (+ residual)
    │     └── norm2 -> ff.layers (Linear, GELU, Linear)        -> drop_resid  (+ residual)
    ├── final_norm
    └── out_head (Linear emb_dim -> vocab_size, no bias, untied from tok_emb)

Configurations are plain dicts, as in the lab (`BASE_CONFIG` updated with a model size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.devices import model_device
from helpers.model_mode import model_mode

BASE_CONFIG: dict = {
    "vocab_size": 50257,
    "context_length": 1024,
    "drop_rate": 0.0,
    "qkv_bias": True,
}

MODEL_SIZES: dict[str, dict] = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}

# Short names accepted by `gpt_config`, and the Hugging Face hub model of each size.
_ALIASES = {
    "124M": "gpt2-small (124M)", "gpt2": "gpt2-small (124M)", "gpt2-small": "gpt2-small (124M)",
    "355M": "gpt2-medium (355M)", "gpt2-medium": "gpt2-medium (355M)",
    "774M": "gpt2-large (774M)", "gpt2-large": "gpt2-large (774M)",
    "1558M": "gpt2-xl (1558M)", "gpt2-xl": "gpt2-xl (1558M)",
}
HUB_MODEL_IDS = {
    "gpt2-small (124M)": "openai-community/gpt2",
    "gpt2-medium (355M)": "openai-community/gpt2-medium",
    "gpt2-large (774M)": "openai-community/gpt2-large",
    "gpt2-xl (1558M)": "openai-community/gpt2-xl",
}


def canonical_model_name(name: str) -> str:
    """'124M', 'gpt2' or 'gpt2-small (124M)' -> 'gpt2-small (124M)'."""
    if name in MODEL_SIZES:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = ", ".join(list(MODEL_SIZES) + list(_ALIASES))
    raise ValueError(f"Unknown GPT-2 model {name!r}. Use one of: {known}.")


def gpt_config(name: str = "gpt2-small (124M)", **overrides) -> dict:
    """The full configuration of a GPT-2 size, with optional overrides (e.g. drop_rate=0.1)."""
    cfg = {**BASE_CONFIG, **MODEL_SIZES[canonical_model_name(name)]}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; known: {sorted(cfg)}.")
    cfg.update(overrides)
    return cfg


class LayerNorm(nn.Module):
    """Layer normalisation with a learnable `scale` and `shift` (eps 1e-5, like GPT-2)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU with the tanh approximation used by GPT-2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise MLP: emb_dim -> 4*emb_dim -> emb_dim."""

    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["emb_dim"]
        self.layers = nn.Sequential(nn.Linear(d, 4 * d), GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v for (batch, heads, seq, head_dim) inputs.

    Token i attends to tokens 0..i only, so right padding never changes the output at a real
    token. float32 and GPUs use `F.scaled_dot_product_attention`. On a CPU in bf16 or fp16
    (under autocast) the same formula is written out, with the softmax in float32: torch's
    fused CPU kernel is several times slower there for the short sequences of this lab
    (its backward pass above all; see benchmarks/README.md).
    """
    if q.device.type != "cpu" or q.dtype == torch.float32:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    weights = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return weights.to(v.dtype) @ v


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with separate query, key and value projections."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads}).")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self._split_heads(self.W_query(x))
        k = self._split_heads(self.W_key(x))
        v = self._split_heads(self.W_value(x))
        context = causal_attention(q, k, v, self.dropout if self.training else 0.0)
        context = context.transpose(1, 2).reshape(b, t, self.d_out)
        return self.out_proj(context)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + att(norm1(x)), then x + ff(norm2(x))."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
            dropout=cfg["drop_rate"], num_heads=cfg["n_heads"], qkv_bias=cfg["qkv_bias"],
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_resid = nn.Dropout(cfg["drop_rate"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_resid(self.att(self.norm1(x)))
        x = x + self.drop_resid(self.ff(self.norm2(x)))
        return x


class GPTModel(nn.Module):
    """GPT-2 language model: token ids (batch, seq) -> logits (batch, seq, vocab_size)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = dict(cfg)
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        _, seq_len = in_idx.shape
        if seq_len > self.cfg["context_length"]:
            raise ValueError(
                f"Sequence of {seq_len} tokens is longer than the context length "
                f"({self.cfg['context_length']}); truncate the input first."
            )
        pos = torch.arange(seq_len, device=in_idx.device)
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(pos))
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)


@torch.no_grad()
def generate_greedy(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                    context_size: int | None = None, eos_id: int | None = None) -> torch.Tensor:
    """Append `max_new_tokens` tokens to `idx` (batch, seq), always taking the most likely one."""
    context_size = context_size or model.cfg["context_length"]
    with model_mode(model, False):
        for _ in range(max_new_tokens):
            logits = model(idx[:, -context_size:])[:, -1, :]
            next_id = logits.argmax(dim=-1, keepdim=True)
            idx = torch.cat([idx, next_id], dim=1)
            if eos_id is not None and bool((next_id == eos_id).all()):
                break
    return idx


def generate_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 20) -> str:
    """Greedy continuation of `prompt` (a quick way to see that real weights loaded)."""
    ids = torch.tensor([tokenizer.encode(prompt)], device=model_device(model))
    out = generate_greedy(model, ids, max_new_tokens, eos_id=tokenizer.eot_token)
    return tokenizer.decode(out[0].tolist())

