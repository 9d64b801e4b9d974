"""Hypothesis settings for the unit tests' properties. By default every run tries the same examples (a property
that fails in CI fails the same way on a laptop), remembers nothing between runs, and tries few enough that
each property takes well under a second. HYPOTHESIS_PROFILE=thorough searches far more widely, with fresh
randomness each run: for a deliberate hunt after changing the code under test, not for every commit."""

import os
from datetime import timedelta

from hypothesis import settings

settings.register_profile(
    "unit", max_examples=50, derandomize=True, database=None, deadline=timedelta(milliseconds=250), print_blob=True
)
settings.register_profile("thorough", max_examples=5_000, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))
