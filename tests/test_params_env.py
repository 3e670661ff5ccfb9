import random

import numpy as np
import pytest
import torch

from autograder.solutions import freeze_and_activate_lora, replace_linear_with_lora
from helpers.env_info import DEVICE_VAR, environment_report, pick_device, set_seed
from helpers.gpt import GPTModel, gpt_config
from helpers.params import count_parameters, print_trainable_parameters


def test_print_trainable_parameters_format_after_lora(capsys):
    model = GPTModel(gpt_config("124M"))
    replace_linear_with_lora(model, rank=8, alpha=16)
    freeze_and_activate_lora(model)
    assert count_parameters(model) == (1_327_104, 164_364_288)
    print_trainable_parameters(model)
    assert capsys.readouterr().out == (
        "trainable params: 1,327,104 || all params: 164,364,288 || trainable%: 0.8074\n"
    )


def test_count_parameters_counts_frozen_ones():
    model = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.Linear(5, 2, bias=False))
    model[0].weight.requires_grad = False
    assert count_parameters(model) == (5 + 10, 55 + 10)


def test_set_seed_makes_every_generator_repeat():
    set_seed(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_environment_report_is_a_markdown_table():
    report = environment_report(seed=123, device="cpu")
    lines = report.splitlines()
    assert lines[:2] == ["| Élément | Valeur |", "| --- | --- |"]
    keys = [line.split("|")[1].strip() for line in lines[2:]]
    assert keys == ["OS", "Python", "torch", "tiktoken", "pandas", "matplotlib", "jupyterlab",
                    "numpy", "Device", "Seed"]
    assert f"| torch | {torch.__version__} |" in lines
    assert "| Seed | 123 |" in lines and "| Device | cpu (" in report


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_VAR, "cpu")
    assert pick_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
