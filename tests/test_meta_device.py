"""helpers.meta_device: models on the meta device, with torch.nn.init's initialisers skipped."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from helpers.gpt import GPTModel, gpt_config
from helpers.meta_device import INITIALISERS, on_meta_device
from helpers.params import count_parameters

TINY = {"n_layers": 2, "context_length": 32, "emb_dim": 16, "n_heads": 2}


def test_same_parameters_as_a_real_build_and_no_memory():
    real = GPTModel(gpt_config("124M", **TINY))
    with on_meta_device():
        meta = GPTModel(gpt_config("124M", **TINY))
    assert all(p.is_meta for p in meta.parameters())
    assert count_parameters(meta) == count_parameters(real)
    assert [(n, p.shape) for n, p in meta.named_parameters()] == \
        [(n, p.shape) for n, p in real.named_parameters()]


def test_initialisers_come_back_even_after_an_error():
    before = {name: getattr(nn.init, name) for name in INITIALISERS}
    with pytest.raises(RuntimeError), on_meta_device():
        assert nn.init.normal_ is not before["normal_"]
        raise RuntimeError("a student's code failed")
    assert {name: getattr(nn.init, name) for name in INITIALISERS} == before
    weight = torch.zeros(3, 3)
    nn.init.ones_(weight)
    assert torch.equal(weight, torch.ones(3, 3))


@pytest.mark.parametrize("context, dynamo", [("torch.device('meta')", True),
                                             ("on_meta_device()", False)])
def test_gpt2_on_the_meta_device_imports_no_torch_dynamo(context, dynamo):
    """The plain meta device imports torch._dynamo (seconds) for nn.Embedding's normal_."""
    code = ("import sys, torch\nfrom helpers.gpt import GPTModel, gpt_config\n"
            "from helpers.meta_device import on_meta_device\n"
            f"with {context}:\n    GPTModel(gpt_config('124M'))\n"
            "print('torch._dynamo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == str(dynamo)
