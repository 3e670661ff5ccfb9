"""Weight loading checked against transformers' own GPT-2 on a tiny random model."""

import json
import time

import pytest
import torch
from safetensors.torch import save_file

from helpers.download import DownloadError
from helpers.gpt import GPTModel
from helpers.gpt_weights import (WEIGHTS_VAR, gpt2_checkpoint_path, load_pretrained_gpt2,
                                 load_weights_into_gpt)

transformers = pytest.importorskip("transformers")

TINY = {"vocab_size": 50257, "context_length": 64, "emb_dim": 48, "n_heads": 4, "n_layers": 3}


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=TINY["vocab_size"], n_positions=TINY["context_length"], n_embd=TINY["emb_dim"],
        n_layer=TINY["n_layers"], n_head=TINY["n_heads"],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random non-zero biases and norms so that every tensor matters
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    hf_model.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    return folder


def _inputs():
    torch.manual_seed(1)
    plain = torch.randint(0, TINY["vocab_size"], (3, 17))
    padded = plain.clone()
    padded[0, 9:] = 50256
    padded[1, 14:] = 50256
    mask = torch.ones_like(padded)
    mask[0, 9:] = 0
    mask[1, 14:] = 0
    return plain, padded, mask


def _load(hf_folder, **kwargs):
    return load_pretrained_gpt2("124M", weights=hf_folder, **TINY, **kwargs)


def test_logits_equal_transformers(hf_model, hf_folder):
    model = _load(hf_folder)
    plain, padded, mask = _inputs()
    with torch.no_grad():
        for x in (plain, padded, plain[:1, :1], plain[:, :TINY["context_length"]]):
            diff = (model(x) - hf_model(x).logits).abs().max().item()
            assert diff < 1e-5, diff
        # Padded input with transformers' attention mask: equal at every real token.
        ours, theirs = model(padded), hf_model(padded, attention_mask=mask).logits
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max().item() < 1e-5


def test_head_is_taken_from_token_embedding(hf_folder):
    model = _load(hf_folder)
    torch.testing.assert_close(model.out_head.weight, model.tok_emb.weight)
    assert model.out_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()  # untied copy


def test_openai_style_keys_without_prefix(hf_model, tmp_path):
    """The hub's original gpt2 checkpoint has no 'transformer.' prefix and keeps mask buffers."""
    sd = {k.removeprefix("transformer."): v.clone() for k, v in hf_model.state_dict().items()
          if k != "lm_head.weight"}
    for i in range(TINY["n_layers"]):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
    save_file(sd, tmp_path / "model.safetensors")
    model = _load(tmp_path / "model.safetensors")
    x = _inputs()[0]
    with torch.no_grad():
        assert (model(x) - hf_model(x).logits).abs().max().item() < 1e-5


def test_local_override_by_environment_variable(hf_folder, monkeypatch):
    monkeypatch.setenv(WEIGHTS_VAR, str(hf_folder))
    assert gpt2_checkpoint_path("124M") == hf_folder / "model.safetensors"


def test_size_mismatch_is_a_clear_error(hf_folder):
    with pytest.raises(ValueError, match="model size differ"):
        load_pretrained_gpt2("124M", weights=hf_folder, **{**TINY, "emb_dim": 64})
    with pytest.raises(ValueError, match="not a GPT-2 checkpoint with 5 layers"):
        load_pretrained_gpt2("124M", weights=hf_folder, **{**TINY, "n_layers": 5})


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No GPT-2 checkpoint"):
        gpt2_checkpoint_path("124M", weights=tmp_path / "nothing-here")
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained_gpt2("124M", weights=broken)


def test_unreachable_hub_gives_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        gpt2_checkpoint_path("124M")
    message = str(info.value)
    assert "Cannot reach http://127.0.0.1:9" in message
    assert WEIGHTS_VAR in message and "model.safetensors" in message
    assert info.value.__cause__ is None  # no stack of socket errors
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert time.monotonic() - start < 10


def test_qkv_bias_required():
    model = GPTModel({**TINY, "drop_rate": 0.0, "qkv_bias": False})
    with pytest.raises(ValueError, match="qkv_bias=True"):
        load_weights_into_gpt(model, {})


def test_grading_mode_builds_once_and_copies_the_same_model_and_random_state(monkeypatch):
    """A repeated grading-mode load equals a new build, weights and random numbers afterwards,
    and is a model of its own (training one copy leaves the next untouched)."""
    from helpers import gpt_weights
    from helpers.gpt_weights import GRADING_SEED, load_lab_gpt2

    monkeypatch.setenv("LORA_LAB_GRADING", "1")
    monkeypatch.setattr(gpt_weights, "_random_builds", {})
    cfg = {"n_layers": 1, "context_length": 16, "emb_dim": 8, "n_heads": 2}
    torch.manual_seed(GRADING_SEED)
    new_build = GPTModel(gpt_weights.gpt_config("gpt2-small (124M)", **cfg)).eval()
    after_new_build = torch.rand(4)

    torch.manual_seed(7)  # a state the loads must not depend on
    first = load_lab_gpt2("gpt2-small (124M)", **cfg)
    with torch.no_grad():
        first.tok_emb.weight.add_(1.0)  # a student's training
    torch.rand(100)
    second = load_lab_gpt2("gpt2-small (124M)", **cfg)
    after_second = torch.rand(4)

    assert len(gpt_weights._random_builds) == 1 and second is not first
    assert not torch.equal(first.tok_emb.weight, new_build.tok_emb.weight)
    assert second.training is False
    assert new_build.state_dict().keys() == second.state_dict().keys()
    for name, tensor in new_build.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name
    assert torch.equal(after_second, after_new_build)


def test_prepared_models_are_handed_out_as_they_are_then_built_anew(monkeypatch):
    """`prepare_random_gpt2(cfg, 2)`: the next two loads are those two models themselves (no
    copy), each its own and equal to a new build with the random numbers a new build leaves; a
    third load, with nothing prepared left, is a new build as well."""
    from helpers import gpt_weights
    from helpers.gpt_weights import GRADING_SEED, load_lab_gpt2, prepare_random_gpt2

    monkeypatch.setenv("LORA_LAB_GRADING", "1")
    monkeypatch.setattr(gpt_weights, "_random_builds", {})
    cfg = {"n_layers": 1, "context_length": 16, "emb_dim": 8, "n_heads": 2}
    full_cfg = gpt_weights.gpt_config("gpt2-small (124M)", **cfg)
    torch.manual_seed(GRADING_SEED)
    new_build = GPTModel(full_cfg).eval()
    after_new_build = torch.rand(4)

    prepare_random_gpt2(full_cfg, calls=2)
    prepared = list(gpt_weights._random_builds[json.dumps(full_cfg, sort_keys=True)].prepared)
    loads = []
    for _ in range(3):
        torch.manual_seed(7)  # a state the loads must not depend on
        model = load_lab_gpt2("gpt2-small (124M)", **cfg)
        assert torch.equal(torch.rand(4), after_new_build)
        assert model.training is False
        for name, tensor in new_build.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), name
        with torch.no_grad():
            model.tok_emb.weight.add_(1.0)  # a student's training: the next load is clean
        loads.append(model)

    assert len(prepared) == 2 and {id(m) for m in loads[:2]} == {id(m) for m in prepared}
    assert all(loads[2] is not m for m in prepared)
