import pytest
import torch

from helpers.gpt import GPTModel, MODEL_SIZES, causal_attention, generate_greedy, gpt_config
from helpers.params import count_parameters


def test_gpt2_small_untied_has_exact_parameter_count():
    model = GPTModel(gpt_config("124M"))
    assert count_parameters(model) == (163_037_184, 163_037_184)
    assert count_parameters(model.trf_blocks[0]) == (7_087_872, 7_087_872)
    assert model.tok_emb.weight.numel() == 38_597_376
    assert model.pos_emb.weight.numel() == 786_432
    assert model.out_head.weight.numel() == 38_597_376
    assert model.final_norm.scale.numel() + model.final_norm.shift.numel() == 1_536


def test_module_names_are_the_labs():
    model = GPTModel(gpt_config("124M", n_layers=1))
    names = {name for name, _ in model.named_modules()}
    for expected in ["tok_emb", "pos_emb", "drop_emb", "trf_blocks.0.att.W_query",
                     "trf_blocks.0.att.W_key", "trf_blocks.0.att.W_value",
                     "trf_blocks.0.att.out_proj", "trf_blocks.0.ff.layers.0",
                     "trf_blocks.0.ff.layers.2", "trf_blocks.0.norm1", "trf_blocks.0.norm2",
                     "trf_blocks.0.drop_resid", "final_norm", "out_head"]:
        assert expected in names
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Linear)]) == 7


@pytest.mark.parametrize("name,emb,layers,heads", [
    ("355M", 1024, 24, 16), ("774M", 1280, 36, 20), ("1558M", 1600, 48, 25),
])
def test_larger_configs(name, emb, layers, heads):
    cfg = gpt_config(name)
    assert (cfg["emb_dim"], cfg["n_layers"], cfg["n_heads"]) == (emb, layers, heads)


def test_config_errors_name_the_choices():
    with pytest.raises(ValueError, match="gpt2-small"):
        gpt_config("7B")
    with pytest.raises(ValueError, match="Unknown config keys"):
        gpt_config("124M", n_layer=3)
    assert len(MODEL_SIZES) == 4


def test_qkv_bias_switch(tiny_cfg):
    with_bias = GPTModel({**tiny_cfg, "qkv_bias": True})
    without = GPTModel({**tiny_cfg, "qkv_bias": False})
    d, n = tiny_cfg["emb_dim"], tiny_cfg["n_layers"]
    assert count_parameters(with_bias)[1] - count_parameters(without)[1] == 3 * d * n
    assert without.trf_blocks[0].att.W_query.bias is None


def test_attention_is_causal(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel(tiny_cfg).eval()
    x = torch.randint(0, 50257, (2, 10))
    changed = x.clone()
    changed[:, 6:] = torch.randint(0, 50257, (2, 4))
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert a.shape == (2, 10, 50257)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_dropout_only_in_training(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel({**tiny_cfg, "drop_rate": 0.5})
    x = torch.randint(0, 50257, (1, 8))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


def test_too_long_input_is_a_clear_error(tiny_cfg):
    model = GPTModel(tiny_cfg)
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, tiny_cfg["context_length"] + 1, dtype=torch.long))


def test_generate_greedy_appends_argmax(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel(tiny_cfg).train()
    idx = torch.tensor([[1, 2, 3]])
    out = generate_greedy(model, idx, max_new_tokens=4)
    assert out.shape == (1, 7) and model.training
    with torch.no_grad():
        model.eval()
        first = model(idx)[0, -1].argmax()
    assert out[0, 3] == first


def test_bf16_attention_on_cpu_matches_fp32_and_stays_causal():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 16, generator=generator, requires_grad=True)
               for _ in range(3))
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(causal_attention(q, k, v), reference)  # float32: torch's kernel
    low = [t.detach().bfloat16().requires_grad_() for t in (q, k, v)]
    out = causal_attention(*low)  # bf16 on a CPU: the formula written out
    assert out.dtype == torch.bfloat16 and not torch.equal(out.float(), reference)
    torch.testing.assert_close(out.float(), reference, atol=3e-2, rtol=0)
    reference.sum().backward()
    out.float().sum().backward()
    for exact, approx in zip((q, k, v), low):
        torch.testing.assert_close(approx.grad.float(), exact.grad, atol=6e-2, rtol=0)
    changed_future = [t.detach().clone() for t in low]
    changed_future[1][:, :, 6:] += 1.0
    changed_future[2][:, :, 6:] -= 1.0
    again = causal_attention(*changed_future)
    assert torch.equal(again[:, :, :6], out.detach()[:, :, :6])
    assert not torch.equal(again[:, :, 6:], out.detach()[:, :, 6:])
