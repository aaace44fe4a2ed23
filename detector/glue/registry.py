"""Registering our layers with Ultralytics' model parser, and the contract that relies on.

Ultralytics' model parser (`ultralytics.nn.tasks.parse_model`) looks a YAML module name up with `globals()[name]`
in `ultralytics.nn.tasks`, and decides how to fill in channels and repeats by membership in sets it builds from
those same globals on every call. It has no plugin hook. So `register()` rebinds the name `A2C2f` in that module to
our SDPA subclass: every YAML that says `A2C2f` (ours, and YOLO12's own) then builds `detector.attention.A2C2f`
and gets exactly the channel/repeat handling Ultralytics gives its own class. `check_contract()` runs when
registering, and `tests/test_ultralytics_contract.py` fails loudly if an Ultralytics upgrade breaks it.

The checkpoints we write record Ultralytics' own classes instead (`detector.glue.checkpoints`); detector 0.1's
pickled ours by import path (`detector.attention.A2C2f`, `detector.attention.AreaAttention`), so those paths must stay
stable for them to load.
"""

from __future__ import annotations

import contextlib
import re

import ultralytics
from ultralytics.nn import tasks
from ultralytics.nn.modules import block

from ..attention import A2C2f

# Tested range of Ultralytics (pyproject.toml pins the same).
ULTRALYTICS_MIN, ULTRALYTICS_BELOW = (8, 4, 190), (8, 5, 0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check_contract() -> None:
    """Raise RuntimeError if this Ultralytics no longer works the way `register()` assumes."""
    version = _version(ultralytics.__version__)
    if not ULTRALYTICS_MIN <= version < ULTRALYTICS_BELOW:
        lo, hi = (".".join(map(str, v)) for v in (ULTRALYTICS_MIN, ULTRALYTICS_BELOW))
        raise RuntimeError(f"ultralytics {ultralytics.__version__} is outside the tested range >={lo},<{hi}; "
                           f"install a version in that range (pip install 'ultralytics>={lo},<{hi}')")
    names = tasks.parse_model.__code__.co_names  # the globals parse_model reads
    if "A2C2f" not in names or "globals" not in names:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: parse_model no longer resolves 'A2C2f' from "
                           "module globals; detector.glue.registry must be updated for this version")


def register() -> None:
    """Make Ultralytics' model parser build our SDPA `A2C2f` for every YAML row that names `A2C2f`. Idempotent."""
    check_contract()
    tasks.A2C2f = A2C2f


@contextlib.contextmanager
def stock_ultralytics():
    """Within this block YAMLs build Ultralytics' own matmul `A2C2f` (for baselines in benchmarks and tests)."""
    tasks.A2C2f = block.A2C2f
    try:
        yield
    finally:
        register()
