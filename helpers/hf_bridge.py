"""From the lab's GPT-2 to Hugging Face's: the same weights in `GPT2ForSequenceClassification`,
and the names of the modules PEFT adapts for the lab's LoRA layers."""

from __future__ import annotations

import torch
from torch import nn

from helpers.gpt import GPTModel
from helpers.gpt_weights import lab_to_hf_state_dict
from helpers.tokenizer import END_OF_TEXT_ID

# The lab's Linear layers of block i and the Hugging Face GPT-2 module that holds each one.
# q, k and v are three Linear layers in the lab and one fused Conv1D (`c_attn`) in GPT-2.
LAB_TO_HF_MODULES = {
    "att.W_query": "attn.c_attn", "att.W_key": "attn.c_attn", "att.W_value": "attn.c_attn",
    "att.out_proj": "attn.c_proj", "ff.layers.0": "mlp.c_fc", "ff.layers.2": "mlp.c_proj",
}
FUSED_QKV = ("att.W_query", "att.W_key", "att.W_value")  # in c_attn's output order
PEFT_TARGET_MODULES = ["c_attn", "c_proj", "c_fc"]  # c_proj: both attn.c_proj and mlp.c_proj


def hf_gpt2_config(model: GPTModel, num_labels: int = 2):
    """A transformers `GPT2Config` with the lab model's sizes (pad token: <|endoftext|>)."""
    from transformers import GPT2Config

    cfg = model.cfg
    end_of_text = min(END_OF_TEXT_ID, cfg["vocab_size"] - 1)  # small test vocabularies too
    return GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"],
                      n_embd=cfg["emb_dim"], n_layer=cfg["n_layers"], n_head=cfg["n_heads"],
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      layer_norm_epsilon=1e-5, activation_function="gelu_new",
                      num_labels=num_labels, pad_token_id=end_of_text,
                      bos_token_id=end_of_text, eos_token_id=end_of_text)


def base_linear(module: nn.Module) -> nn.Linear:
    """The frozen nn.Linear of a lab layer, wrapped in LinearWithLoRA (`.linear`) or not."""
    return module.linear if hasattr(module, "linear") else module


def hf_classifier_like(model: GPTModel):
    """`GPT2ForSequenceClassification` with `model`'s frozen GPT-2 weights and head.

    GPT-2's `score` head has no bias and the lab's head has one: `score` is given a bias
    (the only change to Hugging Face's architecture) so that both compute the same logits.
    LoRA branches are not copied: PEFT adds its own (see `to_peft_state_dict` in notebook 07).
    """
    from transformers import GPT2ForSequenceClassification

    head = model.out_head
    with torch.device("meta"):  # no random initialisation: every weight is copied below
        hf = GPT2ForSequenceClassification(hf_gpt2_config(model, num_labels=head.out_features))
        hf.score = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    base = {name: base_linear(module) for name, module in model.named_modules()}
    weights = {}
    for name, tensor in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        if ".lora" in name or owner.endswith(".linear"):
            continue  # LoRA branches are PEFT's; wrapped layers are read through base_linear
        weights[name] = tensor
    for name, module in base.items():
        if isinstance(module, nn.Linear) and name != "out_head":
            weights[f"{name}.weight"] = module.weight.detach()
            if module.bias is not None:
                weights[f"{name}.bias"] = module.bias.detach()
    hf_weights = lab_to_hf_state_dict(weights, model.cfg["n_layers"])
    hf_weights = {f"transformer.{k}": v for k, v in hf_weights.items()}
    hf_weights["score.weight"] = head.weight.detach()
    if head.bias is not None:
        hf_weights["score.bias"] = head.bias.detach()
    missing, unexpected = hf.load_state_dict({k: v.clone() for k, v in hf_weights.items()},
                                             strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"weights not mapped: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return hf.eval()
