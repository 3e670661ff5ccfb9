"""The class's grades table: every student's result (and the points graded by hand in the class
gradebook) -> grades.csv and the printed summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.grade.results import GRADED, MISSING, StudentResult, write_atomically
from autograder.review.gradebook import PRIVATE_DIR, ManualPoints, manual_points
from helpers.paths import BONUS_NOTEBOOKS


def load_results(out: Path) -> list[StudentResult]:
    """Every student's result in `out/results` (merged shards included), by student id."""
    paths = sorted((Path(out) / "results").glob("*.json"))
    return [StudentResult.from_json(p.read_text(encoding="utf-8")) for p in paths]


def overall_status(result: StudentResult) -> str:
    """'graded', or the notebooks that were not, e.g. '03_lora_injection: timed out'
    (a bonus notebook not handed in is no problem)."""
    problems = [f"{nb.name}: {nb.status}" for nb in result.notebooks if nb.status != GRADED
                and not (nb.name in BONUS_NOTEBOOKS and nb.status == MISSING)]
    return "; ".join(problems) or GRADED


DELEGATION_ERROR = "DelegationError: "  # raised by autograder.checks.delegation


def delegated_exercises(result: StudentResult) -> str:
    """'05_training:train_step, ...': exercises that only called a pack helper (no points)."""
    found = []
    for nb in result.notebooks:
        for message in nb.failed.values():
            if message.startswith(DELEGATION_ERROR):
                exercise = f"{nb.name}:{message[len(DELEGATION_ERROR):].split()[0]}"
                found += [exercise] if exercise not in found else []
    return ", ".join(found)


def grades_table(results: list[StudentResult], manual: ManualPoints = ManualPoints({}, {}),
                 ) -> pd.DataFrame:
    """One row per student: autograded total (required notebooks) and bonus, per-notebook and
    per-test points, status, and the points graded by hand (`manual`): one column per written
    answer and the report (empty: not graded yet), their total, the points still to grade and
    the grand total, each with its maximum. A bonus notebook's written answers count in `bonus`,
    never in the totals."""
    required = {c: m for c, m in manual.maxima.items() if c not in manual.bonus}
    bonus = {c: m for c, m in manual.maxima.items() if c in manual.bonus}
    rows = []
    for result in results:
        graded = manual.points.get(result.student_id, {})
        row = {"student": result.student_id, "status": overall_status(result),
               "total": result.score,
               "max_total": sum(nb.max_score for nb in result.notebooks
                                if nb.name not in BONUS_NOTEBOOKS),
               "bonus": result.bonus + sum(graded.get(c) or 0 for c in bonus),
               "max_bonus": sum(nb.max_score for nb in result.notebooks
                                if nb.name in BONUS_NOTEBOOKS) + sum(bonus.values()),
               "delegated": delegated_exercises(result)}
        if manual.maxima:
            row.update({column: graded.get(column) for column in manual.maxima})
            row["manual_total"] = sum(graded.get(c) or 0 for c in required)
            row["max_manual_total"] = sum(required.values())
            row["manual_points_to_grade"] = sum(m for c, m in manual.maxima.items()
                                                if graded.get(c) is None)
            row["grand_total"] = row["total"] + row["manual_total"]
            row["max_grand_total"] = row["max_total"] + row["max_manual_total"]
        else:
            row["manual_points_to_grade"] = sum(sum(nb.manual.values()) for nb in result.notebooks)
        for nb in result.notebooks:
            row[nb.name] = nb.score
        for nb in result.notebooks:
            for test, points in nb.tests.items():
                row[f"{nb.name}:{test}"] = points
        row["seconds"] = result.seconds
        row.update(result.report)
        rows.append(row)
    return pd.DataFrame(rows)


def merge_results(out: Path, extra_dirs: list[Path] = ()) -> pd.DataFrame:
    """Copy results of other shard folders into `out`, then write `out/grades.csv` atomically."""
    out = Path(out)
    for folder in extra_dirs:
        for sub in ("results", "feedback", PRIVATE_DIR):
            if (Path(folder) / sub).is_dir():
                shutil.copytree(Path(folder) / sub, out / sub, dirs_exist_ok=True)
    table = grades_table(load_results(out), manual_points(out))
    write_atomically(out / "grades.csv", table.to_csv(index=False))
    return table


def summary_text(table: pd.DataFrame) -> str:
    """The table printed at the end of a run: one line per student."""
    if table.empty:
        return "no student graded"
    columns = ["student", "total", "max_total", *NOTEBOOK_NAMES, "report_complete",
               "report_unmatched_numbers", "status"]
    shown = table[[c for c in columns if c in table.columns]].copy()
    short = {"report_complete": "report", "report_unmatched_numbers": "unmatched"}
    shown.columns = [c.split("_")[0] if c in NOTEBOOK_NAMES else short.get(c, c)
                     for c in shown.columns]
    return shown.to_string(index=False, float_format=lambda v: f"{v:g}")
