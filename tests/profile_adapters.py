"""Adapters for the profile tests (loaded by worker processes via module:Name).

``WrongProfile`` is the NumPy reference (it follows every case) declaring a convention it does not
follow — a planted wrong profile entry.
"""

from normconf.adapters.numpy_ref import NumpyReference
from normconf.profiles import convention


class WrongProfile(NumpyReference):
    id = "numpy-wrong-profile"
    worker = "profile-tests"
    conventions = (
        convention(
            "running_variance",
            "unbiased",
            "planted wrong entry (the reference follows the case)",
            "tests/profile_adapters.py",
        ),
    )


ADAPTERS = [WrongProfile]
