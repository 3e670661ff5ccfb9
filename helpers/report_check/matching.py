"""Matching the numbers a report quotes against the numbers the notebooks printed."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from decimal import Decimal

from helpers.report_check.findings import NUMBER, Finding
from helpers.report_check.numbers import (FACTORS, Number, is_calculation, is_result, numbers,
                                          plain, snippet)
from helpers.report_check.sections import norm


class Printed:
    """The numbers a student's notebooks printed, searchable within a tolerance."""

    def __init__(self, texts: Iterable[str], extra: Iterable[int] = ()) -> None:
        plain_values, as_percent, as_fraction = set(map(Decimal, extra)), set(), set()
        for text in texts:
            for number in numbers(text):
                for value, _ in number.readings:
                    plain_values.add(value)
                    if number.unit == "%":
                        as_fraction.add(value / 100)
                    else:
                        as_percent.add(value * 100)
        self._plain, self._as_percent, self._as_fraction = (
            sorted(plain_values), sorted(as_percent), sorted(as_fraction))

    @staticmethod
    def _near(values: list[Decimal], value: Decimal, tolerance: Decimal) -> bool:
        i = bisect_left(values, value - tolerance)
        return i < len(values) and values[i] <= value + tolerance

    def has(self, value: Decimal, tolerance: Decimal, percent: bool) -> bool:
        other = self._as_percent if percent else self._as_fraction
        return self._near(self._plain, value, tolerance) or self._near(other, value, tolerance)


def _unmatched(line: str, number: Number, printed: Printed) -> bool:
    if is_calculation(line, number):
        return False
    if not all(is_result(value, decimals, number.unit) for value, decimals in number.readings):
        return False
    factor = FACTORS.get(number.unit, Decimal(1))
    return not any(printed.has(value * factor, Decimal(5).scaleb(-decimals - 1) * factor,
                               number.unit == "%")
                   for value, decimals in number.readings)


def number_findings(title: str, lines: list[str], printed: Printed) -> list[Finding]:
    """One finding per distinct number of `lines` that claims a result no output backs."""
    findings: dict[str, Finding] = {}
    for line in map(plain, lines):
        for number in numbers(line):
            text = norm(number.text)
            if text not in findings and _unmatched(line, number, printed):
                findings[text] = Finding(
                    title, NUMBER, f"« {text} » n'est dans aucune sortie de vos notebooks / "
                    f"is in no output of your notebooks — « {snippet(line, number)} »", text)
    return list(findings.values())
