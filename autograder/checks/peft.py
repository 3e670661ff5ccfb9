"""Hidden checks of notebook 07 (bonus): `lab_lora_config` and `to_peft_state_dict`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autograder import solutions
from helpers.gpt import GPTModel
from helpers.hf_bridge import hf_classifier_like

TINY = {"vocab_size": 128, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": True}


class _PaperLoRA(nn.Module):
    """A LoRA branch stored in the paper's (and PEFT's) orientation: A (r, in), B (out, r)."""

    def __init__(self, lab_branch: nn.Module):
        super().__init__()
        self.A = nn.Parameter(lab_branch.A.detach().T.clone())
        self.B = nn.Parameter(lab_branch.B.detach().T.clone())
        self.scaling = lab_branch.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A.T @ self.B.T)


def _lab_model(rank: int, alpha: float, orientation: str, seed: int = 0) -> GPTModel:
    """A tiny lab classifier with LoRA everywhere, B and the head bias non-zero."""
    torch.manual_seed(seed)
    model = GPTModel(TINY).eval()
    solutions.replace_linear_with_lora(model, rank, alpha)
    solutions.freeze_and_activate_lora(model)
    solutions.add_classification_head(model, 2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, solutions.LoRALayer):
                module.B.normal_(std=0.2)
        model.out_head.bias.normal_()
    if orientation == "paper":
        for module in list(model.modules()):
            if isinstance(module, solutions.LinearWithLoRA):
                module.lora = _PaperLoRA(module.lora)
    return model


def _tokens(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"] - 1, (3, 10))


def _peft_logits(model: GPTModel, config, state: dict[str, torch.Tensor]) -> torch.Tensor:
    from peft import get_peft_model, set_peft_model_state_dict

    peft_model = get_peft_model(hf_classifier_like(model), copy.deepcopy(config)).eval()
    loaded = set_peft_model_state_dict(peft_model, state)
    assert not loaded.unexpected_keys, (
        f"PEFT does not know these names: {sorted(loaded.unexpected_keys)[:3]}; use "
        "base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight and the like.")
    with torch.no_grad():
        return peft_model(input_ids=_tokens()).logits


def _lab_logits(model: GPTModel) -> torch.Tensor:
    with torch.no_grad():
        return model(_tokens())[:, -1]


def config_matches_the_lab(lab_lora_config) -> None:
    """For several ranks and alphas: rank 3r on c_attn, scaling alpha / rank everywhere, the
    head trained, no dropout; PEFT then computes the lab's logits."""
    for rank, alpha in [(8, 16), (4, 4), (2, 7)]:
        config = lab_lora_config(rank, alpha)
        assert config.lora_dropout == 0, "The lab's LoRA has no dropout: lora_dropout=0.0."
        assert config.fan_in_fan_out, "GPT-2's layers are Conv1D: fan_in_fan_out=True."
        from peft import get_peft_model

        peft_model = get_peft_model(hf_classifier_like(_lab_model(rank, alpha, "lab")),
                                    copy.deepcopy(config))
        for name, module in peft_model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in getattr(module, "r", {}):
                continue
            expected_rank = 3 * rank if name.endswith("c_attn") else rank
            assert module.r["default"] == expected_rank, (
                f"lab_lora_config({rank}, {alpha}): {name} has rank {module.r['default']}, "
                f"the lab's layers need {expected_rank} there.")
            scaling = module.scaling["default"]
            assert abs(scaling - alpha / rank) < 1e-9, (
                f"lab_lora_config({rank}, {alpha}): {name} scales its update by {scaling:g}, "
                f"the lab by alpha / rank = {alpha / rank:g} (check alpha_pattern for c_attn).")
        adapted = {n.rsplit(".", 1)[0] for n, _ in peft_model.named_parameters() if "lora_A" in n}
        assert len(adapted) == 4 * TINY["n_layers"], (
            f"PEFT adapted {len(adapted)} layers of a {TINY['n_layers']}-block GPT-2; the lab "
            "adapts 4 modules per block (c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj).")
        trainable_head = [n for n, p in peft_model.named_parameters() if "score" in n and p.requires_grad]
        assert trainable_head, "The head `score` must be trained: modules_to_save=['score']."
        reference = solutions.to_peft_state_dict(_lab_model(rank, alpha, "lab"))
        difference = (_peft_logits(_lab_model(rank, alpha, "lab"), config, reference)
                      - _lab_logits(_lab_model(rank, alpha, "lab"))).abs().max().item()
        assert difference < 1e-5, (
            f"With lab_lora_config({rank}, {alpha}) PEFT's logits differ from the lab's by "
            f"{difference:.2e}.")


def _mistake(name: str, got: torch.Tensor, expected: torch.Tensor, scaling: float) -> str | None:
    """What is wrong with one tensor of the student's state dict, in words (None: right)."""
    if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6):
        return None
    kind = "lora_A" if "lora_A" in name else "lora_B" if "lora_B" in name else "head"
    if got.shape == expected.T.shape and torch.allclose(got, expected.T, atol=1e-6):
        shape = "(r, in)" if kind == "lora_A" else "(out, r)"
        return f"{name} has the wrong orientation: PEFT's {kind}.weight is {shape}."
    if got.shape == expected.shape and torch.allclose(got, expected * scaling, atol=1e-6):
        return (f"{name} is multiplied by the scaling alpha / r = {scaling:g}: PEFT applies "
                "lora_alpha / r itself, leave A and B as they are.")
    if got.shape != expected.shape:
        return f"{name} has shape {tuple(got.shape)}, PEFT expects {tuple(expected.shape)}."
    return f"{name} does not hold your model's values."


def state_dict_matches(to_peft_state_dict, lab_lora_config) -> None:
    """Both orientations of the lab's LoRALayer, non-zero B: every tensor under PEFT's name and
    orientation, unscaled; PEFT with the lab's config then gives the model's logits."""
    rank, alpha = 4, 12
    config = solutions.lab_lora_config(rank, alpha)  # the student's config is checked apart
    for orientation in ("lab", "paper"):
        model = _lab_model(rank, alpha, orientation)
        got = to_peft_state_dict(model)
        expected = solutions.to_peft_state_dict(model)
        missing = sorted(set(expected) - set(got))
        assert not missing, (f"With LoRA stored in the {orientation}'s orientation, these PEFT "
                             f"names are missing: {missing[:3]}")
        for name, tensor in expected.items():
            problem = _mistake(name, got[name].detach().float(), tensor, alpha / rank)
            assert problem is None, f"LoRA stored in the {orientation}'s orientation: {problem}"
        difference = (_peft_logits(model, config, got) - _lab_logits(model)).abs().max().item()
        assert difference < 1e-5, (
            f"LoRA stored in the {orientation}'s orientation: PEFT's logits differ from the "
            f"model's by {difference:.2e}.")
