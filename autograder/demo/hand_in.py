"""Handing in like a student: run a submission's notebooks in order, write the `rapport.md`
such a student would write from their outputs, and build the demo's set of examples."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.demo.examples import write_examples
from autograder.grade.environment import student_environment, without_carry
from helpers.report_check import TEMPLATE_PATH

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
    env = {**without_carry(), **student_environment(folder)}
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


def _peft_answer(folder: Path) -> str:
    """The bonus section, from notebook 07's outputs ("non traité" when it was not run)."""
    if not (Path(folder) / "07_peft.ipynb").is_file():
        return "Non traité."
    output = _printed(folder, "07_peft")
    per_block = _last(r"LoRA parameters per block: PEFT ([\d,]+), the lab ([\d,]+)", output, "07_peft")
    difference = _last(r"largest difference: ([\d.e+-]+)", output, "07_peft").group(1)
    return (f"PEFT entraîne {per_block.group(1)} paramètres LoRA par bloc contre "
            f"{per_block.group(2)} : q, k et v forment une seule couche `c_attn`, donc une seule "
            f"branche de rang 8. Écart maximal de logits avec l'adaptateur : {difference}.")


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
        _peft_answer(folder),
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
