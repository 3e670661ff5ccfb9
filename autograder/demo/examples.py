"""Example submissions, made from the release and the masters: the complete solution, the
untouched release, classic mistakes seen in real submissions of this lab (each with a known
signature the feedback names), and hostile ones.

Each is a dict of the six notebooks as a student would hand them in (`write_submission`
writes one into a folder); `autograder.demo.hand_in` runs them like a student.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import nbformat

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import MASTERS_DIR, NOTEBOOK_NAMES, parse_master

Notebooks = dict[str, nbformat.NotebookNode]


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _cell(nb: nbformat.NotebookNode, grade_id: str):
    return next(c for c in nb.cells if _grade_id(c) == grade_id)


def complete_solution(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """The release with every exercise cell filled in with the masters' code."""
    notebooks = {}
    for name in NOTEBOOK_NAMES:
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        master = parse_master((MASTERS_DIR / f"{name}.md").read_text(encoding="utf-8"), name)
        solutions = {_grade_id(c): c.source for c in master.cells
                     if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
        for cell in release.cells:
            if _grade_id(cell) in solutions:
                cell.source = solutions[_grade_id(cell)]
        notebooks[name] = release
    return notebooks


def with_written_answers(answers: dict[str, str], release_dir: Path = RELEASE_DIR) -> Notebooks:
    """The complete solution with written answers (grade id -> markdown, e.g. {"q1": ...})."""
    notebooks = complete_solution(release_dir)
    cells = {_grade_id(c): c for nb in notebooks.values() for c in nb.cells}
    for grade_id, text in answers.items():
        cells[grade_id].source = text
    return notebooks


def untouched_release(release_dir: Path = RELEASE_DIR) -> Notebooks:
    return {name: nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
            for name in NOTEBOOK_NAMES}


def out_head_wrapped(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 forgets to skip `out_head`: trainable 1,735,304 instead of 1,327,104."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["03_lora_injection"], "replace_linear_with_lora")
    cell.source = cell.source.replace('        if name == "out_head":\n            continue\n', "")
    return notebooks


def injection_twice(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3's injection cell is run twice: nested wrappers, 2,654,208 trainable."""
    notebooks = complete_solution(release_dir)
    nb = notebooks["03_lora_injection"]
    index = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.startswith("replace_linear_with_lora(model"))
    again = nbformat.v4.new_code_cell("replace_linear_with_lora(model, rank=8, alpha=16)")
    nb.cells.insert(index + 1, again)
    return notebooks


def wrong_lora_init(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 initialises B at random: only step 1 should lose points (later steps are graded
    on the reference step 1)."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["01_lora_layer"], "lora_layer")
    cell.source = cell.source.replace("torch.zeros(rank, out_dim)", "torch.randn(rank, out_dim)")
    return notebooks


def _replaced(notebooks: Notebooks, notebook: str, grade_id: str, old: str, new: str) -> Notebooks:
    """`notebooks` with `old` replaced by `new` in one exercise cell (which must contain it)."""
    cell = _cell(notebooks[notebook], grade_id)
    if old not in cell.source:
        raise ValueError(f"{notebook} [{grade_id}] no longer contains {old!r}")
    cell.source = cell.source.replace(old, new)
    return notebooks


def scaling_alpha(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 scales by alpha instead of alpha / rank: the scaling and forward checks say so."""
    return _replaced(complete_solution(release_dir), "01_lora_layer", "lora_layer",
                     "self.scaling = alpha / rank", "self.scaling = alpha")


PAPER_LORA_LAYER = """\
class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_dim))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(out_dim, rank))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.scaling * (x @ self.A.T @ self.B.T)
"""


def paper_orientation(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 in the LoRA paper's and PEFT's layout (A (rank, in), B (out, rank)): right
    behaviour, so it loses only the visible shape test, which asks for the lab's layout."""
    notebooks = complete_solution(release_dir)
    _cell(notebooks["01_lora_layer"], "lora_layer").source = PAPER_LORA_LAYER
    return notebooks


def attention_only(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 skips the feed-forward blocks ("LoRA is for attention"): 589,824 trainable."""
    return _replaced(complete_solution(release_dir), "03_lora_injection", "replace_linear_with_lora",
                     'if name == "out_head":', 'if name in ("out_head", "ff"):')


def b_frozen(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 unfreezes A but forgets B: 663,552 trainable, nothing would learn."""
    return _replaced(complete_solution(release_dir), "03_lora_injection",
                     "freeze_and_activate_lora", "            module.B.requires_grad = True\n", "")


def head_frozen(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 4 freezes the model again after adding the head: 1,327,104 trainable, head frozen."""
    return _replaced(complete_solution(release_dir), "04_classification_head",
                     "add_classification_head", "    return model\n",
                     "    freeze_and_activate_lora(model)\n    return model\n")


def padding_token(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 4 reads the last position, a padding token for every message but the longest."""
    return _replaced(complete_solution(release_dir), "04_classification_head", "last_token_logits",
                     "return logits[torch.arange(logits.shape[0], device=logits.device), last_idx]",
                     "return logits[:, -1, :]")


def delegating(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Steps 5 and 6 hand their work to the pack's helpers (a default training step of
    helpers.sanity, helpers.inference.classify_texts): no points for those exercises."""
    notebooks = complete_solution(release_dir)
    _cell(notebooks["05_training"], "train_step").source = (
        "from helpers.sanity import _default_step\n\n"
        "def train_step(model, batch, optimizer):\n"
        "    def forward(model, batch):\n"
        "        return last_token_logits(model(batch[0]), batch[2]), batch[1]\n"
        "    return _default_step(forward)(model, batch, optimizer)\n")
    _cell(notebooks["06_inference"], "classify_text").source = (
        "from helpers.inference import classify_texts\n\n"
        "def classify_text(text, model, tokenizer, device, max_length=None):\n"
        "    return classify_texts([text], model, tokenizer, device, max_length,\n"
        "                          last_token_logits)[0]\n")
    return notebooks


def infinite_loop(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 2's exercise cell never ends: that notebook times out."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["02_lora_wrapper"], "linear_with_lora")
    cell.source = "while True:\n    pass\n" + cell.source
    return notebooks


def killed_kernel(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 4 kills its own kernel: that notebook is lost, the others are graded."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["04_classification_head"], "last_token_logits")
    cell.source = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + cell.source
    return notebooks


def edited_test_cell(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 initialises B at random and its failing test was edited into a print: nbgrader
    grades the original test, so the points are those of `wrong_lora_init`."""
    notebooks = wrong_lora_init(release_dir)
    _cell(notebooks["01_lora_layer"], "test_lora_layer_zero_at_init").source = 'print("all good")'
    return notebooks


def deleted_test_cell(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """A visible test cell of step 1 was deleted: nbgrader restores and grades it."""
    notebooks = complete_solution(release_dir)
    nb = notebooks["01_lora_layer"]
    nb.cells = [c for c in nb.cells if _grade_id(c) != "test_lora_layer_shapes"]
    return notebooks


def flooded_output(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 prints a 3-million-character line, a million lines, then a huge HTML output:
    grading stops recording past its budget, keeps a capped amount, the points do not change."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["03_lora_injection"], "replace_linear_with_lora")
    cell.source = ('from IPython.display import HTML, display\n'
                   'print("x" * 3_000_000)\n'
                   'for i in range(1_000_000):\n'
                   '    print(f"line {i}")\n'
                   'display(HTML("<b>" + "y" * 3_000_000 + "</b>"))\n' + cell.source)
    return notebooks


TAMPER_TARGETS = ("checks/_tamper_probe.py", "results/tamper_probe.json")


def tampering(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 is right, then tries to write a file among the hidden checks and a fake result
    among the other students' (TAMPER_TARGETS): both must be refused."""
    notebooks = complete_solution(release_dir)
    notebooks["01_lora_layer"].cells.append(nbformat.v4.new_code_cell(
        "import pathlib\n"
        "import autograder\n"
        "out = next(p for p in pathlib.Path.cwd().parents if (p / 'staging').is_dir())\n"
        f"targets = [pathlib.Path(autograder.__file__).parent / {TAMPER_TARGETS[0]!r},\n"
        f"           out / {TAMPER_TARGETS[1]!r}]\n"
        "for target in targets:\n"
        "    try:\n"
        "        target.write_text('{}')\n"
        "        print('written', target)\n"
        "    except OSError as error:\n"
        "        print('refused', target, error)\n"))
    return notebooks


SNOOP_MARK = "snoop-was-here.txt"  # the file the snooping student tries to leave everywhere

_SNOOP = f"""
import fnmatch, os, pathlib, sys
def note(kind, text):
    print(f"snoop {{kind}}: {{text}}")
# the command lines of every process it can see (a worker's names its student's folders)
for entry in sorted(pathlib.Path("/proc").glob("[0-9]*")):
    try:
        note("process", (entry / "cmdline").read_bytes().replace(b"\\0", b" ").decode()[:1000])
    except OSError:
        pass
# walk up from the working directory, listing every folder on the way
here = pathlib.Path.cwd()
for folder in [here, *here.parents]:
    try:
        note("folder", f"{{folder}}: {{sorted(os.listdir(folder))}}")
    except OSError as error:
        note("folder", f"{{folder}}: {{error.strerror}}")
# search everything visible for notebooks, results, grades, feedback and logs, and print them
home = pathlib.Path.home()
note("home", f"{{home}}: {{sorted(p.name for p in home.iterdir())}}")
skip = {{"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}}
patterns = ("*.ipynb", "*.json", "grades.csv", "*.html", "*.log")
found = 0
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in files:
        if any(fnmatch.fnmatch(name, p) for p in patterns) and found < 200:
            found += 1
            path = os.path.join(root, name)
            try:
                note("file", f"{{path}}: {{open(path, errors='replace').read(120)!r}}")
            except OSError as error:
                note("file", f"{{path}}: {{error.strerror}}")
# try to leave a file everywhere
places = ["/", "/tmp", str(home), sys.prefix, os.path.dirname(os.__file__),
          *map(str, here.parents)]
for place in places:
    try:
        pathlib.Path(place, {SNOOP_MARK!r}).write_text("snooped")
        note("written", place)
    except OSError as error:
        note("refused", f"{{place}}: {{error.strerror}}")
note("done", f"{{found}} files")
"""


def snooping(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """The complete solution whose step 6 ends with a cell that looks for other students'
    work, grades and processes, prints whatever it finds into its own feedback, and tries to
    leave a file (SNOOP_MARK) everywhere: it must find only its own files. Grade it only in
    the bubblewrap sandbox: anywhere else it does read and write all it can."""
    notebooks = complete_solution(release_dir)
    notebooks["06_inference"].cells.append(nbformat.v4.new_code_cell(_SNOOP.strip()))
    return notebooks


EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "complete": complete_solution,
    "untouched": untouched_release,
    "out_head_wrapped": out_head_wrapped,
    "injection_twice": injection_twice,
    "wrong_lora_init": wrong_lora_init,
}
MISTAKE_EXAMPLES: dict[str, Callable[[], Notebooks]] = {  # each one's feedback names it
    "scaling_alpha": scaling_alpha,
    "paper_orientation": paper_orientation,
    "attention_only": attention_only,
    "b_frozen": b_frozen,
    "head_frozen": head_frozen,
    "padding_token": padding_token,
    "delegating": delegating,
}
ROBUSTNESS_EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "infinite_loop": infinite_loop,
    "killed_kernel": killed_kernel,
    "deleted_test_cell": deleted_test_cell,
    "edited_test_cell": edited_test_cell,
    "flooded_output": flooded_output,
    "tampering": tampering,
    "snooping": snooping,
}


def write_submission(notebooks: Notebooks, folder: Path) -> Path:
    """Write the notebooks into `folder` (created, emptied first)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def write_examples(dest: Path, names: list[str] | None = None,
                   release_dir: Path = RELEASE_DIR) -> list[Path]:
    """Write example submissions (default: the demo's), one folder per example, into `dest`."""
    catalogue = {**EXAMPLES, **MISTAKE_EXAMPLES, **ROBUSTNESS_EXAMPLES}
    return [write_submission(catalogue[name](release_dir), dest / name)
            for name in names or list(EXAMPLES)]
