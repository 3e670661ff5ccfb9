"""`python -m helpers.report_check PATH`: print the findings; exit 0 (none), 1 (some), or 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.report_check.check import check_report


def main(argv: list[str] | None = None) -> int:
    """Check PATH/rapport.md and print what to fix; 2 when PATH is not a folder."""
    parser = argparse.ArgumentParser(prog="python -m helpers.report_check",
                                     description="Check rapport.md before handing it in.")
    parser.add_argument("path", type=Path, nargs="?", default=Path("."),
                        help="folder holding rapport.md, img/ and the notebooks (default: .)")
    parser.add_argument("--instructor", action="store_true",
                        help="also list the numbers backed only by values derived from outputs")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        print(f"{args.path} is not a folder: give the folder that holds rapport.md.",
              file=sys.stderr)
        return 2
    check = check_report(args.path)
    print(check.to_markdown(instructor=args.instructor))
    return 0 if not check.findings else 1
