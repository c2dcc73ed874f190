"""Shared test configuration: Hypothesis settings profiles.

``dev`` is fast for the edit-test loop; ``ci`` is thorough and derandomized, so a CI failure
reproduces on every run.  Choose with ``HYPOTHESIS_PROFILE=ci python3 -m pytest tests``.
"""

import os

from hypothesis import settings

settings.register_profile("dev", max_examples=30)
settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
