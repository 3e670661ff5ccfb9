"""Notebook 07's pieces: the lab's GPT-2 as Hugging Face's, the reference PEFT mapping, and the
hidden checks rejecting known-wrong mappings."""

from __future__ import annotations

import pytest
import torch

from autograder import solutions
from autograder.checks import peft as checks
from helpers.gpt import GPTModel
from helpers.gpt_weights import _hf_to_lab_state_dict, lab_to_hf_state_dict
from helpers.hf_bridge import hf_classifier_like

pytest.importorskip("peft")


def _classifier(seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    model = GPTModel(checks.TINY).eval()
    solutions.add_classification_head(model, 2)
    with torch.no_grad():
        model.out_head.bias.normal_()
    return model


def test_lab_to_hf_state_dict_inverts_the_checkpoint_mapping():
    model = GPTModel(checks.TINY)
    lab = {k: v for k, v in model.state_dict().items() if k != "out_head.weight"}
    back = _hf_to_lab_state_dict(lab_to_hf_state_dict(lab, 2), 2)
    back.pop("out_head.weight")  # GPT-2 ties it to the token embedding
    assert back.keys() == lab.keys()
    assert all(torch.equal(back[k], lab[k]) for k in lab)


def test_hf_classifier_has_the_lab_models_logits():
    from transformers import GPT2ForSequenceClassification

    from helpers.hf_bridge import hf_gpt2_config

    model = _classifier()
    tokens = checks._tokens()
    with torch.no_grad():
        lab = model(tokens)[:, -1]
        torch.manual_seed(5)
        untouched = GPT2ForSequenceClassification(hf_gpt2_config(model)).eval()(input_ids=tokens).logits
        hf = hf_classifier_like(model)(input_ids=tokens).logits
    assert (untouched - lab).abs().max() > 1e-2  # a Hugging Face model of its own differs
    torch.testing.assert_close(hf, lab, atol=1e-5, rtol=0)


@pytest.mark.parametrize("orientation", ["lab", "paper"])
def test_reference_mapping_gives_the_lab_logits_in_both_orientations(orientation):
    model = checks._lab_model(4, 12, orientation)
    config = solutions.lab_lora_config(4, 12)
    state = solutions.to_peft_state_dict(model)
    without_lora = {k: (torch.zeros_like(v) if "lora_B" in k else v) for k, v in state.items()}
    lab = checks._lab_logits(model)
    assert (checks._peft_logits(model, config, without_lora) - lab).abs().max() > 1e-3
    assert (checks._peft_logits(model, config, state) - lab).abs().max() < 1e-5


def test_config_check_accepts_the_reference_and_names_each_mistake():
    from peft import LoraConfig

    checks.config_matches_the_lab(solutions.lab_lora_config)

    def tutorial(rank, alpha):  # one rank-r branch for q, k and v together
        return LoraConfig(r=rank, lora_alpha=alpha, target_modules=["c_attn", "c_proj", "c_fc"],
                          fan_in_fan_out=True, lora_dropout=0.0, modules_to_save=["score"],
                          task_type="SEQ_CLS")

    def no_alpha_pattern(rank, alpha):  # c_attn scaled by alpha / 3r
        config = solutions.lab_lora_config(rank, alpha)
        config.alpha_pattern = {}
        return config

    def with_dropout(rank, alpha):
        config = solutions.lab_lora_config(rank, alpha)
        config.lora_dropout = 0.1
        return config

    def frozen_head(rank, alpha):
        config = solutions.lab_lora_config(rank, alpha)
        config.modules_to_save, config.task_type = None, None
        return config

    for wrong, message in [(tutorial, "need 24 there"), (no_alpha_pattern, "alpha_pattern"),
                           (with_dropout, "no dropout"), (frozen_head, "must be trained")]:
        with pytest.raises(AssertionError, match=message):
            checks.config_matches_the_lab(wrong)


def test_state_dict_check_accepts_the_reference_and_names_each_mistake():
    checks.state_dict_matches(solutions.to_peft_state_dict, solutions.lab_lora_config)

    def transposed(model):  # the lab's orientation copied as it is
        return {k: (v.T.contiguous() if "lora_" in k else v)
                for k, v in solutions.to_peft_state_dict(model).items()}

    def scaled(model):  # B multiplied by alpha / r, which PEFT applies again
        scaling = model.trf_blocks[0].att.W_query.lora.scaling
        return {k: (v * scaling if "lora_B" in k else v)
                for k, v in solutions.to_peft_state_dict(model).items()}

    def lab_layout_only(model):  # ignores that a LoRALayer may store (r, in) and (out, r)
        state = solutions.to_peft_state_dict(model)
        if model.trf_blocks[0].att.W_query.lora.A.shape[0] != 32:
            state = transposed(model)
        return state

    def no_head(model):
        state = solutions.to_peft_state_dict(model)
        del state["base_model.model.score.bias"]
        return state

    for wrong, message in [(transposed, "wrong orientation: PEFT's lora_A.weight is \\(r, in\\)"),
                           (scaled, "multiplied by the scaling"),
                           (lab_layout_only, "paper's orientation: .*wrong orientation"),
                           (no_head, "score.bias")]:
        with pytest.raises(AssertionError, match=message):
            checks.state_dict_matches(wrong, solutions.lab_lora_config)
