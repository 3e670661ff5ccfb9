"""What a student's outputs imply: the numbers they print, and the few derived from them.

Printed: every number of the outputs (not the percentages of progress bars), of the
template, and GPT2_SIZES. Derived, each kept with how it was obtained, and by kind only, so
that an invented number stays unmatched:

- the complement to 100 of a share: an accuracy, a class probability (either as a percentage or
  a fraction) or a percentage of parameters: 99.19 % frozen for `trainable%: 0.8074`;
- the difference of two final accuracies (the last printed for train, validation and test),
  in points: the gap between train and test;
- the difference and the ratio of two parameter counts (the integers of the parameter
  summaries): the total lost with the old head, "124 times fewer";
- the total and the mean of the epoch durations (seconds on lines starting `epoch N:`);
- the training history saved with the plots (`img/history.json`): the per-epoch losses,
  accuracies and durations, and the landmarks of each plotted loss series (first, last,
  lowest, highest value); a loss may be read off its curve, within the curve's resolution
  (RESOLUTION of the plot's height), an accuracy is rounded like a printed one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import combinations
from pathlib import Path

from helpers.report_check.numbers import RESULT_MIN, Number, numbers

HISTORY_PATH = Path("img") / "history.json"   # written by helpers.plots.plot_history
RESOLUTION = Decimal("0.01")                  # of a plot's height: how well a curve is read

_PROGRESS = re.compile(r"\s*%\|")              # "100%|████|": a progress bar, not a result
_ACCURACY = re.compile(r"acc|précision", re.IGNORECASE)
_SPLIT = re.compile(r"\b(train|val|test)", re.IGNORECASE)
_PROBABILITY = re.compile(r"\b(?:ham|spam|prob\w*|confi\w*)\b", re.IGNORECASE)
_COUNT_LINE = re.compile(r"param|trainable", re.IGNORECASE)
_EPOCH_LINE = re.compile(r"\s*epoch (\d+):", re.IGNORECASE)


@dataclass(frozen=True)
class Fact:
    """A value the outputs back: `how` is the number as printed or how it was derived."""

    value: Decimal
    unit: str                      # "%" (on the 0-100 scale), "frac" (a share of 1), "s" or ""
    how: str
    sources: tuple[str, ...] = ()  # what a derived value comes from; () when printed
    resolution: Decimal = Decimal(0)   # a value read off a curve: how far off a reader may be


@dataclass(frozen=True)
class _Printed:
    number: Number
    label: str                     # the text between the previous number of the line and it

    @property
    def value(self) -> Decimal:
        return self.number.readings[0][0]

    @property
    def percent(self) -> bool:
        return self.number.unit == "%" or self.label.rstrip().endswith("%:")


def _printed(texts: Iterable[str]) -> Iterator[tuple[str, _Printed]]:
    """(line, number) for every number of the outputs, progress bars' percentages left out."""
    for text in texts:
        for line in text.splitlines():
            end = 0
            for number in numbers(line):
                label, end = line[end:number.start], number.end
                if not (number.unit == "%" and _PROGRESS.match(line[number.end:])):
                    yield line, _Printed(number, label)


def _show(value: Decimal) -> str:
    """A derived value for a reader: at most four decimals, no exponent."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if "." in text or abs(value) < 1000 else f"{int(value):,}"


def printed_facts(texts: Iterable[str], extra: Iterable[int] = ()) -> list[Fact]:
    """Every number of `texts`, in each of its readings, and the `extra` values."""
    facts = [Fact(Decimal(value), "", f"{value:,}") for value in extra]
    for _, printed in _printed(texts):
        facts += [Fact(value, printed.number.unit, printed.number.text)
                  for value, _ in printed.number.readings]
    return facts


def _combined(value: Decimal, unit: str, sources: tuple[str, ...], operator: str) -> Fact:
    return Fact(value, unit, f" {operator} ".join(sources), sources)


def _read_off(value: Decimal, what: str, resolution: Decimal, unit: str = "") -> Fact:
    return Fact(value, unit, f"{what} = {_show(value)}", (HISTORY_PATH.as_posix(),), resolution)


def derived_facts(texts: Iterable[str]) -> list[Fact]:
    """Complements, accuracy gaps, count differences and ratios, epoch totals (see above)."""
    shares, accuracies, counts, seconds = {}, {}, {}, {}
    for line, printed in _printed(texts):
        value, text = printed.value, printed.number.text
        fraction = not printed.percent and 0 < value < 1 and printed.number.readings[0][1] > 0
        scaled = value if printed.percent else value * 100
        accuracy = bool(_ACCURACY.search(printed.label))
        if (printed.percent or fraction) and (accuracy or _PROBABILITY.search(line)
                                              or (printed.percent and _COUNT_LINE.search(line))):
            whole, unit = (Decimal(100), "%") if printed.percent else (Decimal(1), "frac")
            shares.setdefault((whole - value, unit), text)
            if accuracy and (split := _SPLIT.search(printed.label)):
                accuracies[split[1].casefold()] = scaled, text   # the last one printed
        elif (not printed.number.unit and value >= RESULT_MIN and _COUNT_LINE.search(line)
              and printed.number.readings[0][1] == 0):
            counts.setdefault(value, text)
        elif printed.number.unit == "s" and (epoch := _EPOCH_LINE.match(line)):
            seconds[epoch[1]] = (value, text)
    facts = [Fact(rest, unit, f"{'100' if unit == '%' else '1'} − {text}", (text,))
             for (rest, unit), text in shares.items()]
    for (a, a_text), (b, b_text) in combinations(sorted(accuracies.values()), 2):
        facts.append(_combined(b - a, "%", (b_text, a_text), "−"))
    for (a, a_text), (b, b_text) in combinations(sorted(counts.items()), 2):
        facts += [_combined(b - a, "", (b_text, a_text), "−"),
                  _combined(a / b * 100, "%", (a_text, b_text), "/"),
                  _combined(b / a, "", (b_text, a_text), "/")]
    if len(seconds) > 1:
        total = sum(value for value, _ in seconds.values())
        durations = tuple(text for _, text in seconds.values())
        facts += [_combined(total, "s", durations, "+"),
                  Fact(total / len(seconds), "s",
                       f"({' + '.join(durations)}) / {len(seconds)}", durations)]
    return facts


def read_history(folder: Path) -> dict | None:
    """The training history the plots were drawn from, or None when it is missing or damaged."""
    try:
        history = json.loads((folder / HISTORY_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return history if isinstance(history, dict) else None


def _series(history: dict, name: str) -> list[Decimal]:
    values = history.get(name)
    if not isinstance(values, list):
        return []
    return [Decimal(repr(v)) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


LOSS_SERIES = ("batch_loss", "eval_train_loss", "eval_val_loss", "train_loss", "val_loss")


def loss_resolution(history: dict) -> Decimal:
    """How far off a value read off the loss plot may be: RESOLUTION of its height."""
    values = [v for name in LOSS_SERIES for v in _series(history, name)]
    return (max(values) - min(values)) * RESOLUTION if values else Decimal(0)


def curve_facts(history: dict) -> list[Fact]:
    """The per-epoch values and the landmarks of the loss curves (see the module docstring)."""
    loss_step = loss_resolution(history)
    steps = {"train_acc": Decimal(0), "val_acc": Decimal(0), "train_loss": loss_step,
             "val_loss": loss_step, "epoch_seconds": Decimal(0)}
    units = {"train_acc": "frac", "val_acc": "frac", "epoch_seconds": "s"}
    facts = [_read_off(v, f"{name}[{i}]", step, units.get(name, ""))
             for name, step in steps.items() for i, v in enumerate(_series(history, name))]
    for name in LOSS_SERIES[:3]:
        values = _series(history, name)
        if values:
            landmarks = {"first": values[0], "last": values[-1], "min": min(values),
                         "max": max(values)}
            facts += [_read_off(v, f"{kind}({name})", loss_step) for kind, v in landmarks.items()]
    return facts


_AT_BATCH = re.compile(r"\b(?:batch|lot|step|it[ée]ration|iter)s?\s*(?:n°|#|no\.?)?\s*(\d+)"
                       r"|\b(\d+)(?:e|ème|th|st|nd|rd)?\s+(?:batchs?|batches|steps|lots)\b",
                       re.IGNORECASE)
_AT_EXAMPLES = re.compile(r"\b(\d[\d\u00a0\u202f ,.]*)\s*(?:exemples|examples|messages)\b",
                          re.IGNORECASE)


def position_facts(history: dict, line: str) -> list[Fact]:
    """The batch losses at the batches (or examples seen) that `line` names, ± one batch."""
    losses = _series(history, "batch_loss")
    seen = [int(v) for v in _series(history, "examples_seen")]
    indices: set[int] = set()
    for m in _AT_BATCH.finditer(line):
        batch = int(m[1] or m[2])
        indices |= {batch - 2, batch - 1, batch}   # 1-based or 0-based, one batch either side
    for m in _AT_EXAMPLES.finditer(line):
        examples = int(re.sub(r"\D", "", m[1]) or 0)
        after = next((i for i, n in enumerate(seen) if n >= examples), len(seen))
        indices |= {after - 1, after}
    step = loss_resolution(history)
    return [_read_off(losses[i], f"batch_loss[{i}]", step)
            for i in sorted(indices) if 0 <= i < len(losses)]
