"""Precision and recall of the report check's numbers over honest and invented reports (issue 22).

The reports are in tests/data/reports/: each `*.md` answers the sections whose numbers are
checked (Q2-Q5 and section 6) from one run of `runs/` (the outputs of the six notebooks and the
training history the plots were drawn from), in a student's own style: French or English,
rounded or truncated, complements, gaps, minutes, values read off the curves. An invented
report also lists, in `<!-- expect: ... -->` lines, the numbers it made up, as quoted. Each
report becomes a submission folder (notebooks, plots, `img/history.json`, `rapport.md`) and is
checked with `check_report`.

Counted per number: a flagged number is a true positive when it was invented, a false positive
otherwise; an invented number not flagged is a false negative.

Then, so that recall is not only measured on a few hand-written numbers: wrong numbers near each
run's true results (accuracies a few tenths to a few points off, losses 20-50 % off, epoch
times and totals, parameter counts off by a few thousand or a few percent), each quoted the
way a report would, and the share of them that the printed values alone, and the printed and
derived values together, would let through.

    python -m benchmarks.report_check_precision [--show]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from PIL import Image

from autograder.demo.hand_in import fill_report_template
from helpers.paths import LAB_NOTEBOOKS
from helpers.report_check import GPT2_SIZES, TEMPLATE_PATH, ReportCheck, check_report
from helpers.report_check.matching import Outputs, match
from helpers.report_check.numbers import numbers

CASES_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "reports"
SECTIONS = ("Q2", "Q3", "Q4", "Q5", "6")
PLOTS = ("loss_curve.png", "accuracy_curve.png")
TEST_CELL = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t"}}
_HEADER = re.compile(r"<!--\s*(\w+):\s*(.*?)\s*-->")
_SECTION = re.compile(r"^## (Q2|Q3|Q4|Q5|6)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """One report: the run it quotes, its answers, and the numbers it invented."""

    name: str
    run: str
    answers: dict[str, str]
    invented: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()      # notebooks handed in without their outputs
    history: bool = True               # img/history.json handed in

    @property
    def honest(self) -> bool:
        return not self.invented


def read_case(path: Path) -> Case:
    """A report fixture: `<!-- key: value -->` lines, then `## Q2` ... `## 6` sections."""
    text = path.read_text(encoding="utf-8")
    header: dict[str, list[str]] = {}
    for key, value in _HEADER.findall(text[:_SECTION.search(text).start()]):
        header.setdefault(key, []).append(value)
    pieces = _SECTION.split(text)[1:]
    answers = {name: body.strip() for name, body in zip(pieces[::2], pieces[1::2])}
    if sorted(answers) != sorted(SECTIONS):
        raise ValueError(f"{path.name}: sections {sorted(answers)}, expected {SECTIONS}")
    return Case(path.stem, header["run"][0], answers, tuple(header.get("expect", ())),
                tuple(header.get("cleared", ())), header.get("history", ["yes"])[0] == "yes")


def load_cases(folder: Path = CASES_DIR) -> list[Case]:
    return [read_case(path) for path in sorted(folder.glob("[hi][0-9]*.md"))]


def _notebook(cells: list, cleared: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, printed, is_test in cells:
        outputs = [] if cleared else [nbformat.v4.new_output("stream", name="stdout",
                                                              text=printed)]
        cell = nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=1)
        if is_test:
            cell.metadata.update(TEST_CELL)
        nb.cells.append(cell)
    return nb


def build_submission(case: Case, folder: Path) -> Path:
    """The folder a student would hand in with this report (created, emptied first)."""
    run = CASES_DIR / "runs" / case.run
    outputs = json.loads((run / "outputs.json").read_text(encoding="utf-8"))
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "img").mkdir(parents=True)
    for name in LAB_NOTEBOOKS:
        nbformat.write(_notebook(outputs[name], name in case.cleared), folder / f"{name}.ipynb")
    for plot in PLOTS:
        Image.new("RGB", (4, 3), "white").save(folder / "img" / plot)
    if case.history:
        shutil.copy(run / "history.json", folder / "img" / "history.json")
    environment = "".join(printed for _, printed, _ in outputs["05_training"]
                          if printed.startswith("| "))
    answers = case.answers
    report = fill_report_template([
        "Martin, Camille", "21904512", environment,
        "`B` nul : la branche LoRA ajoute zéro au départ ; `alpha / rank` règle son échelle.",
        "Le wrapper partage les poids de la couche d'origine : ni copie ni mémoire en plus.",
        "Les `nn.Linear` sont devenus des `LinearWithLoRA` ; comme B = 0, mêmes sorties.",
        answers["Q2"], answers["Q3"], answers["Q4"], answers["Q5"], answers["6"], "Non traité.",
        "LoRA entraîne une petite partie des paramètres ; limite : le temps d'entraînement."])
    (folder / "rapport.md").write_text(report, encoding="utf-8")
    return folder


def flagged(check: ReportCheck) -> list[str]:
    """The numbers a check flags, as quoted."""
    return [f.value for f in check.unmatched_numbers]


@dataclass
class Score:
    """Numbers flagged rightly (tp), wrongly (fp) and invented but not flagged (fn)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    lines: list[str] = field(default_factory=list)

    def add(self, case: Case, check: ReportCheck) -> None:
        found = flagged(check)
        hits = [v for v in found if v in case.invented]
        wrong = [v for v in found if v not in case.invented]
        missed = [v for v in case.invented if v not in found]
        self.tp, self.fp, self.fn = self.tp + len(hits), self.fp + len(wrong), self.fn + len(missed)
        kind = "honest" if case.honest else "invented"
        self.lines.append(f"| {case.name} | {kind} | {case.run} | {len(case.invented)} | "
                          f"{', '.join(hits) or '-'} | {', '.join(wrong) or '-'} | "
                          f"{', '.join(missed) or '-'} | {len(check.derived)} |")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def _history(run: str) -> dict:
    return json.loads((CASES_DIR / "runs" / run / "history.json").read_text(encoding="utf-8"))


def _outputs(run: str) -> Outputs:
    """What a run's notebooks back, as the check reads it."""
    cells = json.loads((CASES_DIR / "runs" / run / "outputs.json").read_text(encoding="utf-8"))
    texts = [text for nb in cells.values() for source, printed, is_test in nb
             for text in ([printed] if is_test else [printed, source])]
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    return Outputs.read(texts, [template], GPT2_SIZES, _history(run))


def _fr(value: float, decimals: int, unit: str) -> str:
    return f"{value:.{decimals}f}".replace(".", ",") + unit


def wrong_numbers(run: str) -> list[str]:
    """Sentences quoting numbers near the run's true results, none of them right."""
    history = _history(run)
    sentences = []
    for acc in (history["train_acc"][-1], history["val_acc"][-1], history["val_acc"][0]):
        for off in (-3.49, -2.03, -1.21, -0.73, -0.37, 0.37, 0.73, 1.21, 2.03, 3.49):
            sentences += [f"précision {_fr(acc * 100 + off, 2, ' %')}",
                          f"précision {_fr(acc * 100 + off * 0.9, 1, ' %')}"]
    for loss in (history["train_loss"][-1], history["val_loss"][-1], history["batch_loss"][0]):
        sentences += [f"perte {_fr(loss * f, 2, '')}" for f in (0.5, 0.6, 0.8, 1.25, 1.5, 2)]
    seconds = history["epoch_seconds"]
    for duration in (seconds[0], sum(seconds) / len(seconds)):
        sentences += [f"une époque dure {_fr(duration * f, 1, ' s')}" for f in (0.5, 0.8, 1.2, 2)]
    sentences += [f"en tout {_fr(sum(seconds) * f / 60, 1, ' min')}" for f in (0.5, 0.75, 1.5)]
    for count in (1_327_104, 1_328_642, 125_768_450):
        sentences += [f"{count + off:,} paramètres" for off in (-4096, -1024, 1024, 4096, 12288)]
        sentences += [f"{_fr(count * f / 1e6, 2, ' M')} paramètres" for f in (0.9, 1.05, 1.2)]
    return sentences


def leak_rates(run: str) -> tuple[int, int, int]:
    """(wrong numbers, let through by the printed values, by printed and derived values)."""
    outputs = _outputs(run)
    sentences = wrong_numbers(run)
    printed = derived = 0
    for sentence in sentences:
        number = next(numbers(sentence))
        printed += match(number, iter(outputs.printed)) is not None
        derived += match(number, outputs.facts(sentence)) is not None
    return len(sentences), printed, derived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true",
                        help="also print each check's instructor view")
    args = parser.parse_args(argv)
    cases = load_cases()
    score = Score()
    honest_clean = honest_derived = derived_numbers = 0
    with tempfile.TemporaryDirectory(prefix="report-precision-") as tmp:
        for case in cases:
            check = check_report(build_submission(case, Path(tmp) / case.name))
            score.add(case, check)
            honest_clean += case.honest and not check.findings
            honest_derived += case.honest and bool(check.derived)
            derived_numbers += len(check.derived) if case.honest else 0
            if args.show:
                print(f"### {case.name}\n{check.to_markdown(instructor=True)}")
    honest = sum(case.honest for case in cases)
    print(f"{len(cases)} reports: {honest} honest, {len(cases) - honest} with invented numbers "
          f"({score.tp + score.fn} invented numbers)\n")
    print("| report | kind | run | invented | flagged rightly | flagged wrongly | missed "
          "| derived notes |")
    print("| --- | --- | --- | ---: | --- | --- | --- | ---: |")
    print("\n".join(score.lines))
    print(f"\nhonest reports with no finding: {honest_clean} of {honest}")
    print(f"honest reports with a number only a derived value backs (printed values alone would "
          f"flag them): {honest_derived} of {honest}, {derived_numbers} numbers")
    print(f"precision {score.precision:.1%} ({score.tp} of {score.tp + score.fp} flagged numbers "
          f"invented), recall {score.recall:.1%} ({score.tp} of {score.tp + score.fn} invented "
          "numbers flagged)")
    print("\nwrong numbers near the true results, let through (a lower share is better):")
    for run in sorted({case.run for case in cases}):
        total, printed, derived = leak_rates(run)
        print(f"  run {run}: {total} wrong numbers; by the printed values alone "
              f"{printed} ({printed / total:.1%}), with the derived forms {derived} "
              f"({derived / total:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
