"""Work every graded kernel would repeat, done once in the fork server (`forked_kernels`).

Imported by the fork server before any kernel is forked; it runs no student code:

- the GPT-2 tokenizer is built (about 1.5 s, cached by `helpers.tokenizer.gpt2_tokenizer`);
- a module initialised on the meta device, as the hidden checks build their fresh GPT-2s,
  loads the part of torch that meta-device initialisation needs (about 2 s on first use).
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.tokenizer import gpt2_tokenizer

gpt2_tokenizer()
with torch.device("meta"):
    nn.Embedding(2, 2)
