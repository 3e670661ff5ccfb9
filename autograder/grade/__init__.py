"""Grading on the host: stage submissions, run one sandboxed worker per student, collect results."""
