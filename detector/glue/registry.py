"""Registering our layers with Ultralytics' model parser, and the contract that relies on.

Ultralytics' model parser (`ultralytics.nn.tasks.parse_model`) looks a YAML module name up with `globals()[name]`
in `ultralytics.nn.tasks`, and decides how to fill in channels and repeats by membership in sets it builds from
those same globals on every call. It has no plugin hook. So `register()` rebinds the names `A2C2f` and `C2PSA` in
that module to our subclasses (`REGISTERED`): every YAML that says `A2C2f` (ours, and YOLO12's own) or `C2PSA`
(YOLO11's) then builds `detector.attention.A2C2f` / `detector.attention.C2PSA`, whose attention runs on our kernel
policy, and gets exactly the channel/repeat handling Ultralytics gives its own class. `check_contract()` runs when
registering, and `tests/test_ultralytics_contract.py` fails loudly if an Ultralytics upgrade breaks it.

Our Detect subclasses (`HEADS`, e.g. `detector.head.SubgridDetect`) are looked up the same way, but parse_model gives
a head its channel arguments by membership of the class bound to the name `Detect`, so `register()` also rebinds
`parse_model` to `_parse_model`, which binds `Detect` to our head for the length of one parse of a YAML that names it.

No string from a YAML (or the `yaml` a checkpoint carries, which the trainer rebuilds from) is evaluated: Ultralytics'
parse_model evaluates `activation:` with eval() and calls whatever module-global a row names, except while the thread
is marked restricted (its `_SafeLoad`, meant for restricted checkpoint loads): then it reads the activation as
`nn.<Class>(literals)` without eval and admits only nn.Module classes. `_parse_model` marks the thread for every parse
(`restricted_parse`), unless the user trusts the files (detector.trust), and a refusal is an `UnsafeModelYAML` naming
the opt-in.

The checkpoints we write record Ultralytics' own classes instead (`detector.glue.checkpoints`); detector 0.1's
pickled ours by import path (`detector.attention.A2C2f`, `detector.attention.AreaAttention`), so those paths must stay
stable for them to load.
"""

from __future__ import annotations

import contextlib
import re
import threading

import ultralytics
from ultralytics.nn import tasks
from ultralytics.nn.modules import block

from .. import attention, head, trust

# The names parse_model resolves -> (Ultralytics' class, ours). Ours subclass theirs and add no parameters.
REGISTERED = {"A2C2f": (block.A2C2f, attention.A2C2f), "C2PSA": (block.C2PSA, attention.C2PSA)}

# Detect subclasses a YAML may name; parsed with Detect's arguments (nc, reg_max, end2end, input channels).
HEADS = {"SubgridDetect": head.SubgridDetect, "SubgridThinDetect": head.SubgridThinDetect}
STOCK_PARSE, STOCK_DETECT = tasks.parse_model, tasks.Detect  # Ultralytics' own, captured before register()


class UnsafeModelYAML(TypeError):
    """A model YAML (or a checkpoint's) whose activation or a row would run code: refused by the restricted parse."""


# Tested range of Ultralytics (pyproject.toml pins the same).
ULTRALYTICS_MIN, ULTRALYTICS_BELOW = (8, 4, 190), (8, 5, 0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _names(code) -> set[str]:
    """The global names a function's code reads, its nested comprehensions and generators included."""
    return set(code.co_names).union(*(_names(c) for c in code.co_consts if hasattr(c, "co_names")))


def check_contract() -> None:
    """Raise RuntimeError if this Ultralytics no longer works the way `register()` assumes."""
    version = _version(ultralytics.__version__)
    if not ULTRALYTICS_MIN <= version < ULTRALYTICS_BELOW:
        lo, hi = (".".join(map(str, v)) for v in (ULTRALYTICS_MIN, ULTRALYTICS_BELOW))
        raise RuntimeError(f"ultralytics {ultralytics.__version__} is outside the tested range >={lo},<{hi}; "
                           f"install a version in that range (pip install 'ultralytics>={lo},<{hi}')")
    names = STOCK_PARSE.__code__.co_names  # the globals parse_model reads
    missing = [name for name in [*REGISTERED, "Detect", "globals"] if name not in names]
    builder = getattr(tasks, "_initialize_yolo_model", None)  # what DetectionModel.__init__ parses the YAML with
    if builder is None or "parse_model" not in _names(builder.__code__):
        missing.append("parse_model (from _initialize_yolo_model)")
    if missing:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: parse_model no longer resolves "
                           f"{', '.join(missing)} from module globals; detector.glue.registry must be updated")
    # Our A2C2f/C2PSA switch the attention layers their parents build to ours (use_sdpa): the parents must still
    # build them, by those names, and the names must still be the stock layers we have an SDPA twin for. Read from the
    # constructors' code: building a layer would draw on torch's RNG.
    for parent, name in ((block.C2PSA, "PSABlock"), (block.PSABlock, "Attention"), (block.A2C2f, "ABlock"),
                         (block.ABlock, "AAttn")):
        if name not in _names(parent.__init__.__code__):
            raise RuntimeError(f"ultralytics {ultralytics.__version__}: {parent.__name__} no longer builds {name}; "
                               "detector.glue.registry must be updated")
    safe = getattr(tasks, "_SafeLoad", None)
    parse_names = _names(STOCK_PARSE.__code__)
    if not (safe and safe.SUPPORTED and isinstance(getattr(safe, "_local", None), threading.local)
            and {"_SafeLoad", "restricted", "activation"} <= parse_names and _restricted_in_thread(safe)):
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: parse_model no longer builds without eval while "
                           "the thread is marked restricted (_SafeLoad._local.active); detector.glue.registry must be "
                           "updated")
    for name in ("Attention", "AAttn"):
        if getattr(block, name) not in attention.STOCK_BASE.values():
            raise RuntimeError(f"ultralytics {ultralytics.__version__}: block.{name} is not the layer "
                               "detector.attention.STOCK_BASE has an SDPA twin for; detector must be updated")


def register() -> None:
    """Make Ultralytics' model parser build our classes for every YAML row that names `A2C2f` or `C2PSA`.
    Idempotent."""
    check_contract()
    for name, (_, ours) in REGISTERED.items():
        setattr(tasks, name, ours)
    for name, ours in HEADS.items():
        setattr(tasks, name, ours)
    tasks.parse_model = _parse_model


def _restricted_in_thread(safe) -> bool:
    """Does marking this thread (as `restricted_parse` does) make `_SafeLoad.restricted()` true?"""
    local = safe._local
    saved = getattr(local, "active", False)
    local.active = True
    try:
        return safe.restricted()
    finally:
        local.active = saved


@contextlib.contextmanager
def restricted_parse():
    """Within this block this thread's model parses evaluate nothing (see the module docstring); nests, and restores
    the thread's mark on exit (a parse inside a restricted checkpoint load stays restricted)."""
    local = tasks._SafeLoad._local
    saved = getattr(local, "active", False)
    local.active = saved or not trust.trusted()
    try:
        yield
    finally:
        local.active = saved


def _parse_model(d: dict, ch, verbose: bool = True):
    """Ultralytics' parse_model, restricted (`restricted_parse`); for a YAML whose head names one of `HEADS`, with the
    name `Detect` bound to that class while it parses, so the head gets Detect's arguments (parse_model tests
    `m in {Detect, ...}`)."""
    named = {row[2] for row in d.get("head", ()) if isinstance(row, (list, tuple)) and len(row) > 2
             and isinstance(row[2], str)} & HEADS.keys()
    if len(named) > 1:
        raise ValueError(f"a model YAML may name one of {sorted(HEADS)}, not {sorted(named)}")
    if named:
        tasks.Detect = HEADS[named.pop()]
    try:
        with restricted_parse():
            return STOCK_PARSE(d, ch, verbose=verbose)
    except TypeError as e:
        if "restricted" not in str(e):  # Ultralytics' words for what it blocked: "... under restricted loading"
            raise
        blocked = str(e).strip().splitlines()[0].removeprefix("ERROR").lstrip(" ❌️")
        raise UnsafeModelYAML(f"refused: a model YAML's activation must be nn.<Class>(literals) and rows must name "
                              f"layer classes (nothing is evaluated); {trust.hint('it')} (Ultralytics: {blocked})"
                              ) from None
    finally:
        tasks.Detect = STOCK_DETECT


@contextlib.contextmanager
def stock_ultralytics():
    """Within this block YAMLs build Ultralytics' own matmul `A2C2f` and `C2PSA` (for baselines in benchmarks and
    tests)."""
    for name, (theirs, _) in REGISTERED.items():
        setattr(tasks, name, theirs)
    try:
        yield
    finally:
        register()
