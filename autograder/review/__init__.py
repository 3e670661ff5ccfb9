"""What the instructor reviews after autograding: copied submissions (similarity)."""
