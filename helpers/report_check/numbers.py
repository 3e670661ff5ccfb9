"""The number grammar: how numbers are written in reports and outputs, and which claim a result.

Separators `1,327,104`, `1 327 104` (also U+00A0, U+202F, U+2009, `_`, `'`), `1327104`, a
decimal comma or point (`1,327` reads as 1327 or 1.327), an exponent (`5e-4`), and a unit:
`%` (or percentage `points`), seconds (`s`, `sec`, `secondes`), minutes, `k`, `M`
(`million`). Numbers inside names and versions (`Q2`, `bf16`, `2.13.0`) are not numbers.

A bound word just before a number makes it a bound: `moins de 7 minutes`, `less than`,
`under`, `sous` (an upper bound), `plus de 99 %`, `more than`, `over`, `at least` (a lower one).

A quoted number claims a result when it is a percentage, a duration, a decimal, an integer
from RESULT_MIN up or a decimal count of `k` or `M`; not when it is an operand or the result of
a calculation written out in the line (`4 × 8 × (768 + 768)`, `16/8`, `= 110 592`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from helpers.report_check.sections import norm

RESULT_MIN = 10_000                              # smaller bare integers are not results

_NUMBER = re.compile(
    r"(?<![\w.,])"
    r"(?P<int>[1-9]\d{0,2}(?P<sep>[,. \u00a0\u202f\u2009_'])\d{3}(?!\d)(?:(?P=sep)\d{3}(?!\d))*"
    r"|\d+)"
    r"(?:(?P<dec>[.,])(?P<frac>\d+))?"
    r"(?:[eE](?P<exp>[+\-\u2212]?\d+))?")
_UNIT = re.compile(r"[ \u00a0\u202f]?(%|points?|pts?|pp|s|secs?|secondes?|seconds?|min|minutes?|M"
                   r"|millions?|k|K)"
                   r"(?![^\W\d_]|['’])")
_UNIT_NAMES = {"%": "%", "point": "%", "points": "%", "pt": "%", "pts": "%", "pp": "%",
               "min": "min", "minute": "min", "minutes": "min", "M": "M",
               "million": "M", "millions": "M", "k": "k", "K": "k"}
FACTORS = {"min": Decimal(60), "M": Decimal(10) ** 6, "k": Decimal(1000)}
_OPERATOR = r"[+\u2212×÷·⋅/]|\\times|\\cdot|\\div"
_OPERAND_BEFORE = re.compile(rf"(?:{_OPERATOR}|[\d)]\s*[-*xX])[\s($]*$")
_OPERAND_AFTER = re.compile(rf"^[\s)$]*(?:{_OPERATOR}|[-*xX]\s*[\d(])")
_RESULT_BEFORE = re.compile(r"[\d)][\s)$]*(?:=|≈|\\approx)[\s$]*$")
_BELOW = re.compile(r"(?:\bmoins\s+d[e'’]|\bless\s+than|\bfewer\s+than|\bunder|\bbelow"
                    r"|\bsous|\ben\s+dessous\s+d[e'’]|\binférieure?s?\s+à|\bau\s+plus"
                    r"|\bat\s+most|<|≤)\s*$", re.IGNORECASE)
_ABOVE = re.compile(r"(?:\bplus\s+d[e'’]|\bmore\s+than|\bover|\babove|\bau[\s-]delà\s+d[e'’]"
                    r"|\bsupérieure?s?\s+à|\bau\s+moins|\bat\s+least|>|≥)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Number:
    """A number as written in a text."""

    text: str                                 # as written, unit included
    start: int
    end: int                                  # end of the digits, before the unit
    readings: tuple[tuple[Decimal, int], ...]  # (value, decimals); "1,327" has two
    unit: str                                 # "%", "s", "min", "M", "k" or ""
    bound: str = ""                           # "<" after "less than", ">" after "more than"


def numbers(text: str) -> Iterator[Number]:
    """Numbers written in `text`, except those inside names and versions."""
    for m in _NUMBER.finditer(text):
        after = text[m.end():]
        unit = _UNIT.match(after)
        if re.match(r"[.,]\d", after) or (not unit and re.match(r"[^\W\d]", after)):
            continue
        digits = re.sub(r"\D", "", m["int"])
        frac = m["frac"] or ""
        exp = int(m["exp"].replace("\u2212", "-")) if m["exp"] else 0
        value = Decimal(digits + (f".{frac}" if frac else "")).scaleb(exp)
        readings = [(value, len(frac) - exp)]
        if m["sep"] in (",", ".") and m["int"].count(m["sep"]) == 1 and not frac and not exp:
            readings.append((Decimal(m["int"].replace(",", ".")), 3))
        end = m.end() + (unit.end() if unit else 0)
        name = _UNIT_NAMES.get(unit[1], "s") if unit else ""
        before = text[:m.start()]
        bound = "<" if _BELOW.search(before) else ">" if _ABOVE.search(before) else ""
        yield Number(text[m.start():end], m.start(), m.end(), tuple(readings), name, bound)


def is_result(value: Decimal, decimals: int, unit: str) -> bool:
    """Whether a quoted number claims a result (see the module docstring)."""
    if unit in ("%", "s", "min") or decimals > 0:
        return True
    return unit not in ("M", "k") and value >= RESULT_MIN


def is_calculation(line: str, number: Number) -> bool:
    """Whether `number` is an operand or the result of a calculation written in `line`."""
    before, after = line[:number.start], line[number.end:]
    return bool(_OPERAND_BEFORE.search(before) or _OPERAND_AFTER.match(after)
                or _RESULT_BEFORE.search(before))


def plain(line: str) -> str:
    """A markdown line as read: no emphasis markers, entities and LaTeX spacing resolved."""
    line = html.unescape(line).replace("**", "").replace("__", "")
    line = line.replace("\\%", "%").replace("{,}", ",")
    return re.sub(r"\\[,;: ]", " ", line)


def snippet(line: str, number: Number, width: int = 40) -> str:
    """The words around `number` in `line`."""
    start = line.rfind(" ", 0, max(0, number.start - width)) + 1
    end = line.find(" ", number.end + width)
    end = len(line) if end < 0 else end
    return ("…" if start else "") + norm(line[start:end]) + ("…" if end < len(line) else "")
