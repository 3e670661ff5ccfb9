"""Hidden checks of notebook 03: `replace_linear_with_lora` and `freeze_and_activate_lora`.

Fresh GPT-2 models are built on the meta device: these checks need names, shapes and counts,
not values, so no memory is filled and no weight initialised.
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.diagnose import injection_mistake
from helpers.gpt import GPTModel, gpt_config
from helpers.params import count_parameters

# GPT-2 small, untied head, qkv bias: 163,037,184 parameters before LoRA.
GPT2_LINEAR_LAYERS_BUT_HEAD = 72
LORA_PARAMS_RANK_8 = 1_327_104  # 12 blocks x (4 x 8 x 1,536 + 2 x 8 x 3,840)
ALL_PARAMS_RANK_8 = 163_037_184 + LORA_PARAMS_RANK_8


def _is_wrapper(module: nn.Module) -> bool:
    return hasattr(module, "linear") and hasattr(module, "lora")


def _wrappers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if _is_wrapper(m)]


def _gpt2_with_lora(replace_linear_with_lora, freeze_and_activate_lora, rank=8, alpha=16):
    with torch.device("meta"):
        model = GPTModel(gpt_config("124M"))
        result = replace_linear_with_lora(model, rank, alpha)
        model = result if isinstance(result, nn.Module) else model
        freeze_and_activate_lora(model)
    return model


def model_state(model: nn.Module) -> None:
    """The notebook's own model: 72 wrapped layers, not nested, head untouched, exact counts."""
    mistake = injection_mistake(model)  # out_head wrapped, injected twice, half the layers...
    assert mistake is None, mistake
    wrapped = _wrappers(model)
    assert isinstance(getattr(model, "out_head", None), nn.Linear), (
        "model.out_head must stay a plain nn.Linear: skip it when injecting LoRA."
    )
    assert len(wrapped) == GPT2_LINEAR_LAYERS_BUT_HEAD, (
        f"{len(wrapped)} layers are wrapped; GPT-2 small has {GPT2_LINEAR_LAYERS_BUT_HEAD} "
        "linear layers besides out_head."
    )
    assert count_parameters(model) == (LORA_PARAMS_RANK_8, ALL_PARAMS_RANK_8), (
        f"trainable/all parameters are {count_parameters(model)}, not what rank 8 gives."
    )


def gpt2_rank_8(replace_linear_with_lora, freeze_and_activate_lora) -> None:
    """On a fresh GPT-2 small, rank 8: the same state as the notebook's model must have."""
    model = _gpt2_with_lora(replace_linear_with_lora, freeze_and_activate_lora)
    model_state(model)


def other_ranks(replace_linear_with_lora, freeze_and_activate_lora) -> None:
    """Counts scale with the rank (rank 2 and 16)."""
    for rank in (2, 16):
        model = _gpt2_with_lora(replace_linear_with_lora, freeze_and_activate_lora,
                                rank=rank, alpha=2 * rank)
        mistake = injection_mistake(model)
        assert mistake is None, f"With rank {rank}: {mistake}"
        trainable, total = count_parameters(model)
        expected = LORA_PARAMS_RANK_8 * rank // 8
        assert trainable == expected, f"With rank {rank}: {trainable:,} trainable, expected {expected:,}."
        assert total == 163_037_184 + expected, f"With rank {rank}: {total:,} parameters in all."


def returns_and_recurses(replace_linear_with_lora) -> None:
    """Nested containers are searched; a Linear directly in the root is wrapped too."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8),
        nn.Sequential(nn.ReLU(), nn.Sequential(nn.Linear(8, 8))),
        nn.ModuleDict({"out_head": nn.Linear(8, 3), "other": nn.Linear(8, 3)}),
    )
    replace_linear_with_lora(model, 2, 4)
    assert sorted(_wrappers(model)) == ["0", "1.1.0", "2.other"], (
        f"Wrapped {sorted(_wrappers(model))} in a nested test model; every nn.Linear at any "
        "depth except modules named out_head must be wrapped."
    )


def resnet_linear_layers(replace_linear_with_lora, freeze_and_activate_lora) -> None:
    """On the pack's ResNet exactly its nn.Linear layers are wrapped; convolutions are not."""
    from helpers.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(num_classes=200, blocks_per_stage=(2, 2, 2), widths=(8, 16, 32))
    linear_names = sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    result = replace_linear_with_lora(model, 8, 16)
    model = result if isinstance(result, nn.Module) else model
    freeze_and_activate_lora(model)
    mistake = injection_mistake(model)
    assert mistake is None, f"On a ResNet: {mistake}"
    assert sorted(_wrappers(model)) == linear_names, (
        f"On a ResNet the wrapped layers are {sorted(_wrappers(model))}; exactly its nn.Linear "
        f"layers {linear_names} should be (convolutions are left alone)."
    )
    trainable, _ = count_parameters(model)
    assert trainable == 8 * (32 + 200), f"{trainable} trainable parameters on the ResNet's head."
