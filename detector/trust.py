"""The one opt-in that lets a file run code: DETECTOR_TRUST_PICKLE=1, for files you trust.

Without it nothing a file holds is run: a .pt is unpickled only against an allow-list of model classes
(detector.glue.checkpoints); a model YAML's, or a checkpoint's, `activation:` is read without eval and its rows may
name only layer classes (detector.glue.registry); a dataset YAML's `download:` script (Python, `bash ...` or a URL) is
never run, and a missing split is an error naming it (detector.glue.data). With it, all three run as Ultralytics
runs them. ULTRALYTICS_SAFE_LOAD=1 overrules it.
"""

from __future__ import annotations

import os

ENV = "DETECTOR_TRUST_PICKLE"
_ON = {"1", "true", "yes", "on"}


def trusted() -> bool:
    """The user trusts the files given (DETECTOR_TRUST_PICKLE=1), and ULTRALYTICS_SAFE_LOAD=1 does not overrule it."""
    return os.environ.get(ENV, "").lower() in _ON and os.environ.get("ULTRALYTICS_SAFE_LOAD", "").lower() not in _ON


def hint(what: str = "this file") -> str:
    """The end of a refusal: how to opt in."""
    return f"if you trust {what}, set {ENV}=1"
