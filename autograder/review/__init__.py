"""After autograding: what the instructor reviews (manual grading, similarity)."""
