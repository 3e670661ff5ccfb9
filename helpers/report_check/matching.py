"""Matching the numbers a report quotes against what the notebooks' outputs imply.

A quoted number matches a value when it equals that value rounded to the quoted decimals (both
ways of rounding a half accepted): 0,81 % for 0.8074, 95,7 % for 95.67 %. A quoted percentage
may also be an output fraction times 100 (96 % for 0.9567), a quoted plain number an output
percentage over 100 (0.9567 for 95.67 %). Units change the scale: `2,7 min` is 162 s ± 3 s;
`1,3 M` is 1,300,000 ± 50,000, and counts in `k` or `M` may also be truncated (1,32 M for
1,327,104). After a bound word the quoted number is the value rounded up (`moins de 7 minutes`
for 6.5 min) or down (`plus de 99 %` for 99.19 %). A value read off a curve matches within the
curve's resolution when the quoted digits are no finer than a tenth of it.

Printed values are tried first, then the derived ones (helpers.report_check.facts): a number
that only a derived value backs is noted for the instructor, with what it was derived from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from helpers.report_check.facts import (Fact, curve_facts, derived_facts, position_facts,
                                        printed_facts)
from helpers.report_check.findings import NUMBER, Derived, Finding
from helpers.report_check.numbers import (FACTORS, Number, is_calculation, is_result, numbers,
                                          plain, snippet)
from helpers.report_check.sections import norm

_TRUNCATED_UNITS = ("M", "k")


@dataclass(frozen=True)
class Outputs:
    """What a submission's outputs back: printed values, derived ones, its training history."""

    printed: list[Fact]
    derived: list[Fact]
    history: dict | None

    @classmethod
    def read(cls, texts: list[str], also_printed: list[str], extra: tuple[int, ...],
             history: dict | None) -> Outputs:
        """From the notebooks' `texts`; `also_printed` and `extra` back numbers as printed."""
        derived = derived_facts(texts) + (curve_facts(history) if history else [])
        return cls(_distinct(printed_facts([*texts, *also_printed], extra)), _distinct(derived),
                   history)

    def facts(self, line: str) -> Iterator[Fact]:
        """Every value that backs a number of `line`: the printed ones first."""
        yield from self.printed
        yield from self.derived
        if self.history:
            yield from position_facts(self.history, line)


def _distinct(facts: list[Fact]) -> list[Fact]:
    """The first fact of each value, unit and resolution."""
    first: dict[tuple[Decimal, str, Decimal], Fact] = {}
    for fact in facts:
        first.setdefault((fact.value, fact.unit, fact.resolution), fact)
    return list(first.values())


def _scales(fact: Fact, unit: str) -> Iterator[tuple[Decimal, Decimal]]:
    """(value, resolution) of `fact` for a number quoted in `unit`. A duration needs a value in
    seconds. A printed number may be quoted as a percentage (times 100) and a printed
    percentage as a plain number (over 100); a derived value keeps to its kind: a derived
    percentage or duration backs only a percentage or a duration, a derived share of 1 (an
    accuracy of the history, a complement) also a percentage, any other only a plain number."""
    duration = unit in ("s", "min")
    if duration != (fact.unit == "s") and (duration or fact.sources):
        return
    if fact.sources and fact.unit in ("%", "") and (unit == "%") != (fact.unit == "%"):
        return
    yield fact.value, fact.resolution
    if unit == "%" and fact.unit != "%":
        yield fact.value * 100, fact.resolution * 100
    if unit != "%" and fact.unit == "%" and not fact.sources:
        yield fact.value / 100, fact.resolution / 100


def _fits(value: Decimal, resolution: Decimal, quoted: Decimal, step: Decimal,
          number: Number) -> bool:
    """Whether `quoted`, given to `step`, says `value` (see the module docstring)."""
    if number.bound == "<":
        return quoted - step < value <= quoted
    if number.bound == ">":
        return quoted <= value < quoted + step
    tolerance = max(step / 2, resolution) if step >= resolution / 10 else step / 2
    if abs(value - quoted) <= tolerance:
        return True
    return number.unit in _TRUNCATED_UNITS and quoted <= value < quoted + step


def _readings(number: Number) -> Iterator[tuple[Decimal, Decimal]]:
    """(value, step) of each reading of `number`, in the outputs' units."""
    factor = FACTORS.get(number.unit, Decimal(1))
    for value, decimals in number.readings:
        yield value * factor, Decimal(1).scaleb(-decimals) * factor


def match(number: Number, facts: Iterator[Fact]) -> Fact | None:
    """The first fact that backs `number`, or None."""
    readings = list(_readings(number))
    for fact in facts:
        for value, resolution in _scales(fact, number.unit):
            if any(_fits(value, resolution, quoted, step, number) for quoted, step in readings):
                return fact
    return None


def _like(number: Number, value: Decimal) -> str:
    """`value` (in the outputs' units) written the way `number` is, at its precision."""
    decimals = max(number.readings[0][1], 0)
    digits, unit = number.text[:number.end - number.start], number.text[number.end - number.start:]
    shown = f"{value / FACTORS.get(number.unit, Decimal(1)):,.{decimals}f}"
    if decimals and "," in digits and "." not in digits:
        return shown.replace(",", " ").replace(".", ",") + unit
    if not decimals:
        return shown.replace(",", re.sub(r"\d", "", digits)[:1]) + unit
    return shown + unit


def closest(number: Number, facts: Iterator[Fact]) -> str:
    """What the number could have been: the nearest printed value, and the nearest derived
    one when it is nearer still."""
    quoted, _ = next(_readings(number))
    best: dict[bool, tuple[Decimal, Fact, Decimal]] = {}
    for fact in facts:
        for value, _ in _scales(fact, number.unit):
            derived, distance = bool(fact.sources), abs(value - quoted)
            if derived not in best or distance < best[derived][0]:
                best[derived] = distance, fact, value
    hints = []
    for derived, label in ((False, "le plus proche affiché / closest printed"),
                           (True, "dérivé / derived")):
        if derived in best and (not hints or best[True][0] < best[False][0]):
            _, fact, value = best[derived]
            shown = _like(number, value)
            hints.append(f"{label}: {fact.how}" + (f" ({shown})" if shown != fact.how else ""))
    return " ; ".join(hints)


def _checked(line: str, number: Number) -> bool:
    """Whether `number` claims a result (not a calculation, not a small integer)."""
    return not is_calculation(line, number) and all(
        is_result(value, decimals, number.unit) for value, decimals in number.readings)


def number_findings(title: str, lines: list[str],
                    outputs: Outputs) -> tuple[list[Finding], list[Derived]]:
    """Findings for the numbers of `lines` no output backs, and notes for the derived ones."""
    findings: dict[str, Finding] = {}
    derived: dict[str, Derived] = {}
    for line in map(plain, lines):
        for number in numbers(line):
            text = norm(number.text)
            if text in findings or text in derived or not _checked(line, number):
                continue
            fact = match(number, outputs.facts(line))
            if fact is None:
                hint = closest(number, outputs.facts(line))
                findings[text] = Finding(
                    title, NUMBER, f"« {text} » n'est dans aucune sortie de vos notebooks / "
                    f"is in no output of your notebooks — « {snippet(line, number)} »"
                    + (f" — {hint}" if hint else ""), text)
            elif fact.sources:
                derived[text] = Derived(title, text, fact.sources, fact.how)
    return list(findings.values()), list(derived.values())
