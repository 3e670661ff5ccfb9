"""What the grading fork server does before it forks any kernel (`forked_kernels`).

Imported by the fork server only; it runs no student code. It does once, for every kernel of
a student, what each notebook would do again:

- it imports torch, then the modules the notebooks and their hidden checks import
  (`NOTEBOOK_MODULES`; notebook 07's slow transformers and PEFT are imported by its own kernel,
  started early: see `autograder.grade.student.SLOW_IMPORTS`);
- it builds the GPT-2 tokenizer (cached by `helpers.tokenizer.gpt2_tokenizer`);
- in grading mode, it builds the random-weight GPT-2s the notebooks load (`load_lab_gpt2`:
  the full model and its 2-block version), as many of each as one notebook loads
  (`helpers.gpt_weights.prepare_random_gpt2`): each kernel, forked after, has them
  copy-on-write and takes them as they are, instead of initialising 90-160 million weights
  (1-2 s per model) or copying them (0.1-2 s). They are built in a thread (torch's
  initialisers release the GIL) while the main thread imports the modules, and the random
  generator is then put back as a new process has it.
"""

from __future__ import annotations

import importlib
import threading

import torch

from helpers.gpt import gpt_config
from helpers.gpt_weights import prepare_random_gpt2
from helpers.modes import grading_mode
from helpers.tokenizer import gpt2_tokenizer

# each model, and the most times one notebook loads it (03, 04: the full one; 05-07: the
# 2-block one, twice in 07)
NOTEBOOK_MODELS = ((gpt_config("gpt2-small (124M)"), 1),
                   (gpt_config("gpt2-small (124M)", n_layers=2), 2))
NOTEBOOK_MODULES = (
    "torch._dynamo",  # imported by torch's optimizers and meta-device initialisers: about 2 s
    "torch.nn.functional", "numpy", "pandas", "tiktoken", "matplotlib.figure",
    "ipykernel.kernelapp", "ipykernel.debugger", "psutil",
    "helpers.carry", "helpers.spam_data", "helpers.training",
    "helpers.inference", "helpers.image_data", "helpers.resnet", "helpers.params",
    "helpers.lora_merge", "helpers.sanity", "helpers.plots", "helpers.checkpoint",
    "helpers.diagnose", "autograder.solutions",
)  # not autograder.checks: importing it in a kernel installs its traceback filter (IPython's)


def _build_notebook_models() -> None:
    with torch.random.fork_rng(devices=[]):
        for cfg, calls in NOTEBOOK_MODELS:
            prepare_random_gpt2(cfg, calls)


builder = threading.Thread(target=_build_notebook_models, name="notebook-models")
if grading_mode():
    builder.start()
for module in NOTEBOOK_MODULES:
    importlib.import_module(module)
gpt2_tokenizer()
if builder.is_alive():
    builder.join()  # no thread may run when the fork server starts forking
