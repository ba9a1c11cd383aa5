"""Where the plugin's property files (``properties/``) are, installed or in a checkout."""
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def properties_dir():
    """``properties/``: inside the installed package (wheel), else at the checkout's top."""
    for candidate in (
        os.path.join(_PACKAGE_DIR, "properties"),
        os.path.join(os.path.dirname(_PACKAGE_DIR), "properties"),
    ):
        if os.path.isdir(os.path.join(candidate, "dataset")):
            return candidate
    raise FileNotFoundError(
        "recbole_hymirec's properties/ folder is missing from both the package and the "
        "checkout. Fix: reinstall the package (pip install -e . or the wheel)."
    )
