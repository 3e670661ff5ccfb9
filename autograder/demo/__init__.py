"""Example submissions (the complete solution and known mistakes) for the demo and the tests."""
