"""Example submissions, made from the release and the masters, for the demo and the tests.

Each is a folder of the six notebooks as a student would hand them in: the complete solution,
the untouched release, and classic mistakes seen in real submissions of this lab.
`hand_in_with_report` runs a folder's notebooks like a student (in grading mode) and writes the
`rapport.md` such a student would write from those outputs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from autograder.course import RELEASE_DIR
from autograder.notebook_source import MASTERS_DIR, NOTEBOOK_NAMES, parse_master
from helpers.modes import GRADING_VAR
from helpers.report_check import TEMPLATE_PATH

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


EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "complete": complete_solution,
    "untouched": untouched_release,
    "out_head_wrapped": out_head_wrapped,
    "injection_twice": injection_twice,
    "wrong_lora_init": wrong_lora_init,
}
ROBUSTNESS_EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "infinite_loop": infinite_loop,
    "killed_kernel": killed_kernel,
    "deleted_test_cell": deleted_test_cell,
    "edited_test_cell": edited_test_cell,
    "flooded_output": flooded_output,
    "tampering": tampering,
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
    catalogue = {**EXAMPLES, **ROBUSTNESS_EXAMPLES}
    return [write_submission(catalogue[name](release_dir), dest / name)
            for name in names or list(EXAMPLES)]


# --- a student's run and report ---------------------------------------------------------------

PLACEHOLDER = re.compile(r"(?<!`)\*À compléter\.\*(?!`)")  # not the one quoted in the intro


def fill_report_template(answers: list[str], template: Path = TEMPLATE_PATH) -> str:
    """The report template with each `*À compléter.*` replaced in turn by an answer."""
    text = template.read_text(encoding="utf-8")
    count = len(PLACEHOLDER.findall(text))
    if count != len(answers):
        raise ValueError(f"the template has {count} sections to fill, {len(answers)} answers given")
    remaining = iter(answers)
    return PLACEHOLDER.sub(lambda _: next(remaining), text)


def run_like_a_student(folder: Path, timeout: int = 600) -> None:
    """Execute the six notebooks of `folder` in order and save them with their outputs.

    Grading mode (no download); each notebook reuses the folder's earlier ones, plots go to
    `folder/img`; the downloads and checkpoint folder (`folder/data`) is removed afterwards.
    """
    folder = Path(folder).resolve()
    env = {name: value for name, value in os.environ.items() if name != "LORA_LAB_CARRY_DIR"}
    env.update({GRADING_VAR: "1", "LORA_LAB_DATA_DIR": str(folder / "data"),
                "LORA_LAB_IMG_DIR": str(folder / "img")})
    for name in tqdm(NOTEBOOK_NAMES, desc=f"running {folder.name}'s notebooks", unit="notebook"):
        path = folder / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute(env=env)
        nbformat.write(nb, path)
    shutil.rmtree(folder / "data", ignore_errors=True)


def _printed(folder: Path, name: str) -> str:
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    return "\n".join(output.get("text", "") for cell in nb.cells
                     for output in cell.get("outputs", []))


def _last(pattern: str, text: str, where: str) -> re.Match:
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    if not matches:
        raise ValueError(f"{where} printed no line matching {pattern!r}: run its notebooks first")
    return matches[-1]


def _gpt_parameters_line(text: str, where: str) -> str:
    """The last `trainable params: ...` line of a GPT-2 sized model (over 10 M parameters, not
    the ResNet the notebooks also print) with part of it frozen."""
    lines = re.finditer(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| "
                        r"trainable%: [\d.]+", text)
    found = [m.group(0) for m in lines
             if m.group(1) != m.group(2) and int(m.group(2).replace(",", "")) > 10_000_000]
    if not found:
        raise ValueError(f"{where} printed no parameter summary of GPT-2 with LoRA: run it first")
    return found[-1]


def report_from_outputs(folder: Path) -> str:
    """The rapport.md a student would write from the outputs of `folder`'s executed notebooks."""
    folder = Path(folder)
    lora = _gpt_parameters_line(_printed(folder, "03_lora_injection"), "03_lora_injection")
    head_output = _printed(folder, "04_classification_head")
    head = _gpt_parameters_line(head_output, "04_classification_head")
    loss = _last(r"Initial loss ([\d.]+), expected log\(2\) = ([\d.]+)", head_output,
                 "04_classification_head")
    training = _printed(folder, "05_training")
    epoch = _last(r"epoch 1: ([\d.]+) s, train acc ([\d.]+)%, validation acc ([\d.]+)%",
                  training, "05_training")
    test = _last(r"test accuracy: ([\d.]+)%", training, "05_training").group(1)
    header = "\n".join(line for line in training.splitlines() if line.startswith("|"))
    inference = _printed(folder, "06_inference")
    examples = re.findall(r"^ *(spam|ham) +([\d.]+)% +(.{20})", inference, re.MULTILINE)[:2]
    if len(examples) < 2 or not header:
        raise ValueError(f"{folder}: notebooks 05 and 06 have not been run")
    return fill_report_template([
        "Exemple, Élève", "00000000", header,
        "`B` nul : la couche LoRA ajoute zéro au départ, le modèle est inchangé ; `A` aléatoire "
        "permet au gradient de `B` d'être non nul. `alpha / rank` fixe l'échelle de la mise à jour.",
        "Le wrapper garde la couche d'origine elle-même : ses poids restent partagés avec le "
        "modèle, sans copie ni mémoire en plus, et ce sont eux qu'on gèle.",
        "Les `nn.Linear` des blocs sont devenus des `LinearWithLoRA` (la couche d'origine plus "
        "la branche LoRA) ; les formes et `out_head` n'ont pas changé. B = 0 : mêmes sorties.",
        f"```\n{lora}\n```\nÀ la main, rang 8 : 4 × 8 × (768 + 768) + 2 × 8 × (768 + 3072) = "
        "110 592 par bloc, et 12 × 110 592 = 1 327 104.",
        f"```\n{head}\n```\nLe total diminue : la tête de 50 257 sorties (768 × 50 257 = "
        f"38 597 376 poids) devient une tête à 2 classes. Perte initiale {loss.group(1)}, "
        f"log(2) = {loss.group(2)}.",
        "La perte par batch diminue en restant bruitée (batchs de 8 messages). Précisions : "
        f"entraînement {epoch.group(2)} %, validation {epoch.group(3)} %, test {test} %. "
        f"Une époque dure {epoch.group(1)} s.",
        f"Test {test} % contre {epoch.group(2)} % en entraînement, les deux mesurées en mode "
        "évaluation après l'entraînement : le modèle a vu les messages d'entraînement.",
        "\n".join(f"- « {text.strip()}… » : {label} à {probability} %"
                  for label, probability, text in examples),
        "LoRA entraîne moins de 1 % des paramètres pour adapter tout le modèle ; limite observée : "
        "le temps d'une époque sur CPU.",
    ])


def hand_in_with_report(folder: Path) -> Path:
    """Run `folder`'s notebooks like a student, then write its rapport.md from their outputs."""
    run_like_a_student(folder)
    report = Path(folder) / "rapport.md"
    report.write_text(report_from_outputs(folder), encoding="utf-8")
    return report


def with_invented_number(handed_in: Path, dest: Path) -> Path:
    """A copy of a handed-in folder whose report pastes a trainable count that no run printed
    (copied from someone else's run, say): the report check must point at it."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(handed_in, dest)
    report = dest / "rapport.md"
    text = report.read_text(encoding="utf-8")
    last = _last(r"trainable params: ([\d,]+)", text, str(report))
    invented = f"{int(last.group(1).replace(',', '')) + 4096:,}"
    report.write_text(text[:last.start(1)] + invented + text[last.end(1):], encoding="utf-8")
    return dest


def write_demo_examples(dest: Path, release_dir: Path = RELEASE_DIR) -> list[Path]:
    """The demo's examples. `complete` is handed in as a student would: notebooks run and a
    report written from their outputs; `invented_number` is the same with one count in the
    report that no run printed."""
    folders = write_examples(dest, release_dir=release_dir)
    hand_in_with_report(dest / "complete")
    return [*folders, with_invented_number(dest / "complete", dest / "invented_number")]
