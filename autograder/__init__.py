"""Instructor side of the course pack: reference solutions, master notebooks and grading.

Nothing in this package is shipped to students.
"""
