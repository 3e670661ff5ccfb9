"""Similarity across a class: which pairs of submissions are unusually close to each other.

Every student's staged folder (`<staging>/<student>/{NN_name.ipynb, rapport.md}`), and the
reference solution as the pseudo-student `REFERENCE`, gives these documents:

- one per notebook: the code of its exercise cells and of any code cell the student added;
- `answers`: the written answers (nbgrader answer cells, Q1-Q5) of all notebooks;
- `rapport`: `rapport.md`.

copydetect fingerprints each document as MOSS does (k-grams, hashed and winnowed). Code is
tokenized by pygments first, names and strings replaced by placeholders and comments and
whitespace dropped, so renaming variables and reformatting change nothing; text is compared
lower-cased with its whitespace collapsed. Cells left as released are dropped and every k-gram
of the release (its code cells, its markdown, the report template) is boilerplate, removed, so
text that two students both kept from the release does not match. Fingerprints form a set:
reordering functions changes only the k-grams across the seams.

A pair's score for a document is the share of fingerprints the two have in common (Dice,
2|A∩B| / (|A| + |B|)); its overall score is the mean over the documents both handed in (a
document left as released has no fingerprint). How unusual a pair is, `z`, is the mean over
those documents of how many robust standard deviations (1.4826 x the median absolute deviation,
at least `MIN_SPREAD`) its score lies above the class's median for that document: short
exercises make every pair alike, and the reference solution has only code. A pair is flagged
when its overall score reaches `threshold` and its `z` reaches `min_z`.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import tempfile
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import NOTEBOOK_NAMES, load_master
from autograder.grade.staging import REPORT_NAME, stage_submissions
from helpers.report_check import TEMPLATE_PATH

if TYPE_CHECKING:
    from copydetect import CodeFingerprint

REFERENCE = "(reference solution)"  # cannot clash with a staged student id ([A-Za-z0-9_.@-])
ANSWERS, RAPPORT = "answers", "rapport"
DOCUMENTS = (*NOTEBOOK_NAMES, ANSWERS, RAPPORT)
TEXT_DOCUMENTS = (ANSWERS, RAPPORT)
MIN_SPREAD = 0.05  # floor of the class's spread, so that a uniform class does not flag everyone
CSV_NAME, HTML_NAME = "similarity.csv", "similarity.html"
SUMMARY_PAIRS = 10  # flagged pairs named in the summary line (all are in the CSV and HTML)

Documents = dict[str, str]  # document name -> text (code as written, text normalised)


@dataclass(frozen=True)
class SimilarityOptions:
    """Flagging rule and fingerprint sizes (k: k-gram length in characters of normalised code
    or text; window: winnowing window, 1 keeps every k-gram)."""

    threshold: float = 0.5
    min_z: float = 3.0
    code_k: int = 25
    code_window: int = 1
    text_k: int = 40
    text_window: int = 1

    def fingerprint_size(self, document: str) -> tuple[int, int]:
        if document in TEXT_DOCUMENTS:
            return self.text_k, self.text_window
        return self.code_k, self.code_window


@dataclass(frozen=True)
class PairScore:
    """Two students' scores per document (None where one of them has nothing to compare)."""

    student_a: str
    student_b: str
    scores: dict[str, float | None]
    overall: float | None
    z: float | None = None
    flagged: bool = False
    reason: str = ""


@dataclass
class SimilarityResult:
    """Every pair of the class, closest first, and where the CSV and HTML report were written."""

    students: list[str]
    pairs: list[PairScore]
    medians: dict[str, float]  # per document and "overall", over the pairs that have it
    spreads: dict[str, float]  # robust standard deviations, likewise
    options: SimilarityOptions
    csv_path: Path | None = None
    html_path: Path | None = None
    fingerprints: dict[str, dict[str, CodeFingerprint]] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> list[PairScore]:
        return [pair for pair in self.pairs if pair.flagged]

    def summary_line(self) -> str:
        """One line for the grading summary: the flagged pairs, or that there are none."""
        count = len(self.students) - (REFERENCE in self.students)
        if not self.flagged:
            return f"similarity: no pair flagged among {count} students"
        names = ", ".join(f"{p.student_a} & {p.student_b} ({p.overall:.2f})"
                          for p in self.flagged[:SUMMARY_PAIRS])
        more = len(self.flagged) - SUMMARY_PAIRS
        names += f" and {more} more" if more > 0 else ""
        where = f" (see {self.html_path})" if self.html_path else ""
        return f"similarity: {len(self.flagged)} pair(s) flagged, a reason to look: {names}{where}"


def normalise_text(text: str) -> str:
    """Lower-cased, whitespace collapsed to single spaces (the report shows text this way)."""
    return " ".join(text.split()).lower()


Cell = dict  # a notebook cell as stored in the .ipynb file (nbformat 4)


def _nbgrader(cell: Cell) -> dict:
    metadata = cell.get("metadata")
    marks = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return marks if isinstance(marks, dict) else {}


def _source(cell: Cell) -> str:
    source = cell.get("source", "")
    return "".join(map(str, source)) if isinstance(source, list) else str(source)


def _is_student_code(cell: Cell) -> bool:
    """Exercise cells and cells without nbgrader marks (the student may have added them)."""
    marks = _nbgrader(cell)
    return cell.get("cell_type") == "code" and (bool(marks.get("solution")) or not marks)


def _is_answer(cell: Cell) -> bool:
    return cell.get("cell_type") == "markdown" and bool(_nbgrader(cell).get("solution"))


def read_cells(path: Path) -> list[Cell] | None:
    """A notebook's cells, or None when it is missing or unreadable (graded as such elsewhere).
    Plain JSON: nbformat's validation would cost more than the comparison."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8", errors="replace"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else None


def _release(release_dir: Path) -> dict[str, list[Cell]]:
    return {name: read_cells(release_dir / f"{name}.ipynb") or [] for name in NOTEBOOK_NAMES}


def released_cells(release_dir: Path = RELEASE_DIR) -> frozenset[str]:
    """The sources of every release cell, stripped: a cell left as released is not compared."""
    return frozenset(_source(c).strip() for cells in _release(release_dir).values() for c in cells)


def notebook_documents(notebooks: dict[str, list[Cell]],
                       released: frozenset[str] = frozenset()) -> Documents:
    """Per-notebook code and the written answers of a student's notebooks (cells by notebook
    name), without the cells whose source is one of `released`."""
    docs: Documents = {}
    answers = []
    for name in NOTEBOOK_NAMES:
        if name not in notebooks:
            continue
        own = [c for c in notebooks[name] if _source(c).strip() not in released]
        docs[name] = "\n\n".join(_source(c) for c in own if _is_student_code(c))
        answers += [_source(c) for c in own if _is_answer(c)]
    docs[ANSWERS] = normalise_text("\n\n".join(answers))
    return docs


def student_documents(folder: Path, released: frozenset[str] = frozenset()) -> Documents:
    """The documents of one staged submission folder."""
    notebooks = {name: read_cells(folder / f"{name}.ipynb") for name in NOTEBOOK_NAMES}
    docs = notebook_documents({k: v for k, v in notebooks.items() if v is not None}, released)
    report = folder / REPORT_NAME
    if report.is_file():
        docs[RAPPORT] = normalise_text(report.read_text(encoding="utf-8", errors="replace"))
    return docs


def reference_documents(released: frozenset[str] = frozenset()) -> Documents:
    """The reference solution's documents, from the master notebooks."""
    return notebook_documents({name: load_master(name).cells for name in NOTEBOOK_NAMES},
                              released)


def boilerplate_documents(release_dir: Path = RELEASE_DIR,
                          template: Path = TEMPLATE_PATH) -> Documents:
    """What the release gives everyone: all its code cells (for every notebook's code), all its
    markdown (for the answers) and the report template."""
    cells = [c for notebook in _release(release_dir).values() for c in notebook]
    code = "\n\n".join(_source(c) for c in cells if c.get("cell_type") == "code")
    markdown = "\n\n".join(_source(c) for c in cells if c.get("cell_type") == "markdown")
    docs = {name: code for name in NOTEBOOK_NAMES}
    docs[ANSWERS] = normalise_text(markdown)
    docs[RAPPORT] = normalise_text(template.read_text(encoding="utf-8"))
    return docs


def fingerprint(text: str, document: str, options: SimilarityOptions,
                boilerplate: np.ndarray | None = None,
                window: int | None = None) -> CodeFingerprint:
    """copydetect's CodeFingerprint of one document (code tokenized as Python, text as is)."""
    from copydetect import CodeFingerprint  # on use: it loads matplotlib, slow for the CLI

    k, default_window = options.fingerprint_size(document)
    code = document not in TEXT_DOCUMENTS
    return CodeFingerprint(f"{document}.py" if code else document, k,
                           default_window if window is None else window, boilerplate,
                           filter=code, language="python" if code else None,
                           fp=io.StringIO(text))


def boilerplate_hashes(boilerplate: Documents, options: SimilarityOptions) -> dict[str, np.ndarray]:
    """Every k-gram hash of the release's documents (no winnowing, as copydetect does); the
    notebooks share one text, fingerprinted once."""
    done: dict[tuple[str, bool], np.ndarray] = {}
    hashes = {}
    for doc, text in boilerplate.items():
        key = (text, doc in TEXT_DOCUMENTS)
        if key not in done:
            done[key] = np.array(sorted(fingerprint(text, doc, options, window=1).hashes))
        hashes[doc] = done[key]
    return hashes


def dice(a: set, b: set) -> float | None:
    """Shared fingerprints over all fingerprints of the two; None if either has none."""
    if not a or not b:
        return None
    return 2 * len(a & b) / (len(a) + len(b))


def _spread(values: list[float]) -> tuple[float, float]:
    """Median and robust standard deviation (scaled MAD, at least MIN_SPREAD)."""
    if not values:
        return 0.0, MIN_SPREAD
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median, max(1.4826 * mad, MIN_SPREAD)


def _reason(pair: PairScore, medians: dict[str, float], options: SimilarityOptions) -> str:
    closest = sorted(((s, d) for d, s in pair.scores.items() if s is not None), reverse=True)
    parts = ", ".join(f"{d} {s:.2f} (class median {medians[d]:.2f})" for s, d in closest[:4])
    return (f"overall {pair.overall:.2f} >= threshold {options.threshold:.2f}, and its documents "
            f"are on average {pair.z:.1f} robust SDs above the class median (min "
            f"{options.min_z:g}); closest: {parts}")


def score_class(documents: dict[str, Documents], boilerplate: Documents,
                options: SimilarityOptions | None = None) -> SimilarityResult:
    """Score every pair of `documents` (student -> documents) and flag the unusual ones."""
    options = options or SimilarityOptions()
    excluded = boilerplate_hashes(boilerplate, options)
    fingerprints = {student: {doc: fingerprint(text, doc, options, excluded.get(doc))
                              for doc, text in docs.items()}
                    for student, docs in documents.items()}
    hashes = {student: {doc: f.hashes for doc, f in prints.items()}
              for student, prints in fingerprints.items()}
    students = sorted(documents)
    raw = []
    for a, b in combinations(students, 2):
        scores = {doc: dice(hashes[a].get(doc, set()), hashes[b].get(doc, set()))
                  for doc in DOCUMENTS}
        present = [s for s in scores.values() if s is not None]
        raw.append(PairScore(a, b, scores, sum(present) / len(present) if present else None))
    stats = {doc: _spread([p.scores[doc] for p in raw if p.scores[doc] is not None])
             for doc in DOCUMENTS}
    stats["overall"] = _spread([p.overall for p in raw if p.overall is not None])
    medians = {doc: median for doc, (median, _) in stats.items()}
    spreads = {doc: spread for doc, (_, spread) in stats.items()}
    pairs = []
    for pair in raw:
        if pair.overall is None:
            pairs.append(pair)
            continue
        deviations = [(score - medians[doc]) / spreads[doc]
                      for doc, score in pair.scores.items() if score is not None]
        z = sum(deviations) / len(deviations)
        flagged = pair.overall >= options.threshold and z >= options.min_z
        scored = replace(pair, z=z, flagged=flagged)
        if flagged:
            scored = replace(scored, reason=_reason(scored, medians, options))
        pairs.append(scored)
    pairs.sort(key=lambda p: (-(p.overall if p.overall is not None else -1), p.student_a,
                              p.student_b))
    return SimilarityResult(students, pairs, medians, spreads, options, fingerprints=fingerprints)


def _format(score: float | None) -> str:
    return "" if score is None else f"{score:.3f}"


def write_csv(result: SimilarityResult, path: Path) -> Path:
    """One row per pair: student_a, student_b, a score per document, overall, flagged, reason."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["student_a", "student_b", *DOCUMENTS, "overall", "z", "flagged", "reason"])
        for pair in result.pairs:
            writer.writerow([pair.student_a, pair.student_b,
                             *(_format(pair.scores[d]) for d in DOCUMENTS), _format(pair.overall),
                             "" if pair.z is None else f"{pair.z:.1f}", pair.flagged, pair.reason])
    return path


def similarity_report(staging_dir: Path, out: Path, options: SimilarityOptions | None = None,
                      release_dir: Path = RELEASE_DIR) -> SimilarityResult:
    """Compare every staged submission (`staging_dir/<student>/`) with every other and with the
    reference solution; write `out/similarity.csv` and `out/similarity.html`."""
    from autograder.review.similarity_report import write_html  # here: it imports this module

    released = released_cells(release_dir)
    documents = {folder.name: student_documents(folder, released)
                 for folder in sorted(Path(staging_dir).iterdir()) if folder.is_dir()}
    documents[REFERENCE] = reference_documents(released)
    result = score_class(documents, boilerplate_documents(release_dir), options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.csv_path = write_csv(result, out / CSV_NAME)
    result.html_path = write_html(result, out / HTML_NAME)
    return result


def similarity_from_submissions(submissions: Path, out: Path,
                                options: SimilarityOptions | None = None,
                                id_pattern: str | None = None) -> SimilarityResult:
    """Stage a folder or LMS zip of submissions (as `grade` does, in a temporary folder) and
    write the similarity report into `out`."""
    with tempfile.TemporaryDirectory(prefix="lora-similarity-") as tmp:
        staging = Path(tmp) / "staging"
        stage_submissions(Path(submissions), staging, id_pattern)
        return similarity_report(staging, out, options)
