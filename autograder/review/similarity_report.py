"""The similarity report as HTML: flagged pairs side by side, matching passages highlighted.

Matching passages are copydetect's (`compare_files` on the two fingerprints, the release's
text excluded); the page also shows the class's median and spread per document and the
closest pairs that were not flagged, so that a flag can be read against the rest of the class.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from copydetect import compare_files
from copydetect.utils import highlight_overlap

from autograder.review.similarity import DOCUMENTS, TEXT_DOCUMENTS, PairScore, SimilarityResult

CLOSEST_SHOWN = 20  # unflagged pairs listed for comparison
_MARK = '<mark>', '</mark>'
_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
.side { display: flex; gap: 1em; } .side > div { flex: 1; min-width: 0; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; }
pre.text { white-space: pre-wrap; }
mark { background: #ffd27f; }
"""


def _highlighted(text: str, slices: np.ndarray) -> str:
    if slices.size == 0:
        return html.escape(text)
    marked, _ = highlight_overlap(text, slices.astype(int), *_MARK, escape_html=True)
    return marked


def _document_html(name: str, score: float, pair: PairScore, result: SimilarityResult) -> str:
    first = result.fingerprints[pair.student_a][name]
    second = result.fingerprints[pair.student_b][name]
    _, _, (slices_a, slices_b) = compare_files(first, second)
    kind = "text" if name in TEXT_DOCUMENTS else "code"
    return (f"<h3>{html.escape(name)}: {score:.2f}</h3><div class='side'>"
            f"<div><pre class='{kind}'>{_highlighted(first.raw_code, slices_a)}</pre></div>"
            f"<div><pre class='{kind}'>{_highlighted(second.raw_code, slices_b)}</pre></div></div>")


def _pair_html(pair: PairScore, result: SimilarityResult) -> str:
    parts = [f"<h2>{html.escape(pair.student_a)} &amp; {html.escape(pair.student_b)}: "
             f"{pair.overall:.2f}</h2><p><b>Why flagged:</b> {html.escape(pair.reason)}</p>",
             f"<div class='side'><div><b>{html.escape(pair.student_a)}</b></div>"
             f"<div><b>{html.escape(pair.student_b)}</b></div></div>"]
    parts += [_document_html(name, pair.scores[name], pair, result)
              for name in DOCUMENTS if pair.scores.get(name) is not None]
    return "\n".join(parts)


def _score_table(pairs: list[PairScore]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>"
                     for h in ("student_a", "student_b", *DOCUMENTS, "overall", "z"))
    rows = []
    for pair in pairs:
        cells = [pair.student_a, pair.student_b,
                 *("" if pair.scores[d] is None else f"{pair.scores[d]:.2f}" for d in DOCUMENTS),
                 f"{pair.overall:.2f}", f"{pair.z:.1f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _class_table(result: SimilarityResult) -> str:
    names = [*DOCUMENTS, "overall"]
    header = "".join(f"<th>{html.escape(name)}</th>" for name in ["", *names])
    rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(f"<td>{values[name]:.2f}</td>" for name in names) + "</tr>"
        for label, values in (("class median", result.medians),
                              ("robust SD", result.spreads)))
    return f"<table><tr>{header}</tr>{rows}</table>"


def write_html(result: SimilarityResult, path: Path) -> Path:
    """Write the report of `result` (what the release gives is never highlighted)."""
    options = result.options
    flagged = result.flagged
    closest = [p for p in result.pairs if not p.flagged and p.overall is not None][:CLOSEST_SHOWN]
    body = [
        "<h1>Similarity between submissions</h1>",
        f"<p>{len(result.students)} submissions (the reference solution included), "
        f"{len(result.pairs)} pairs. A score is the share of fingerprints two documents have in "
        "common; <i>overall</i> is the mean over the documents both handed in, <i>z</i> the "
        "mean over them of how many robust standard deviations the pair's score lies above the "
        f"class's median. A pair is flagged when its overall score is at least "
        f"{options.threshold:.2f} and its z at least {options.min_z:g}. Text given by the "
        "release (its code, its markdown, the report template) is never counted nor "
        "highlighted. <b>A flag is a reason to look, not a verdict.</b></p>",
        _class_table(result),
        f"<h2>Flagged pairs: {len(flagged)}</h2>",
        _score_table(flagged) if flagged else "<p>None.</p>",
        *(_pair_html(pair, result) for pair in flagged),
        f"<h2>Closest pairs not flagged (top {len(closest)})</h2>",
        _score_table(closest),
    ]
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'>"
                    f"<title>Similarity</title><style>{_STYLE}</style></head><body>"
                    + "\n".join(body) + "</body></html>\n", encoding="utf-8")
    return path
