"""`python -m helpers`: check that the course pack is installed and works on this machine."""

from __future__ import annotations

import os

from helpers.env_info import environment_report
from helpers.gpt import GPTModel, gpt_config
from helpers.gpt_weights import WEIGHTS_VAR
from helpers.params import trainable_parameters_line
from helpers.paths import data_dir, img_dir
from helpers.tokenizer import gpt2_tokenizer


def main() -> None:
    print("Environment (paste into rapport.md):\n")
    print(environment_report())
    tok = gpt2_tokenizer()
    print(f"\nTokenizer: tiktoken '{tok.name}', {tok.n_vocab} tokens, "
          f"'Hello, world!' -> {tok.encode('Hello, world!')}")
    model = GPTModel(gpt_config("124M"))
    print(f"GPT-2 small (random weights): {trainable_parameters_line(model)}")
    weights = os.environ.get(WEIGHTS_VAR)
    print(f"Downloads go to {data_dir()}, plots to {img_dir()}")
    print(f"Pretrained weights: {weights or 'downloaded on first use (set ' + WEIGHTS_VAR + ' to use a local copy)'}")
    print("\nInstallation OK. Next: `jupyter lab`, then open notebooks/01_lora_layer.ipynb.")


if __name__ == "__main__":
    main()
