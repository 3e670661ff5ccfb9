"""Instructor side of the course pack: reference solutions, master notebooks and grading.

Nothing in this package is shipped to students.
"""

import sys

# jsonschema, which nbformat imports, builds the grammars of its optional IRI format checker
# (rfc3987-syntax 1.1) at import time: about 4 s in every grading process on a small machine
# (python-jsonschema/jsonschema#1428). No schema the grader validates uses the `iri` formats,
# so the grader's processes go without that checker.
sys.modules.setdefault("rfc3987_syntax", None)
