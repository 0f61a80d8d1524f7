"""The run profile: ``full`` (default) or ``ci``, chosen by one environment variable.

Notebooks and the CLI read ``DIFFUSION_KERAS_PROFILE``. The ``ci`` profile runs the same cells with
fewer steps and samples so that nbval re-runs every notebook in minutes on two CPU cores.
"""

import os

PROFILE_VARIABLE = "DIFFUSION_KERAS_PROFILE"
PROFILES = ("full", "ci")


def profile():
    """Return the active profile name, ``"full"`` or ``"ci"``."""
    value = os.environ.get(PROFILE_VARIABLE, "full").strip().lower() or "full"
    if value not in PROFILES:
        raise ValueError(
            f"{PROFILE_VARIABLE}={value!r} is not a known profile; expected one of {PROFILES}."
        )
    return value


def is_ci_profile():
    """True when the small CI profile is active (``DIFFUSION_KERAS_PROFILE=ci``)."""
    return profile() == "ci"
