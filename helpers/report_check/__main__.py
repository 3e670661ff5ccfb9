"""Entry point of `python -m helpers.report_check PATH` (see helpers.report_check.cli)."""

from helpers.report_check.cli import main

raise SystemExit(main())
