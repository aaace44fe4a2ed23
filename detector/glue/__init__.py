"""Every use of Ultralytics internals lives in this package, each module with a `check_contract()` that fails loudly
(naming what changed) if an Ultralytics upgrade breaks what it relies on. The rest of `detector` uses Ultralytics'
public API only (YOLO, the predictor and validator classes, `check_det_dataset`, the exporter, its CLI entry).

- registry.py     our `A2C2f` and `C2PSA` for every YAML that names them (the model parser's globals), our Detect
                  subclasses (`SubgridDetect`) with Detect's arguments, and every parse restricted (no eval)
- checkpoints.py  every .pt loads through Ultralytics' restricted loader (opt-out for trusted files), onto our layers
- names.py        our model YAMLs and bundled datasets by bare name, through Ultralytics' file lookup
- data.py         dataset YAMLs read as UTF-8 or refused, their `download:` scripts never run (opt-in as for .pt)
- loss.py         Ultralytics' detection loss with the same values and gradients in less memory (the trainer's)
- assigner.py     Ultralytics' task-aligned assignment over the (box, anchor) pairs that can match (the loss's)
- trainer.py      DetectorTrainer: line-filtered labels, atomic checkpoints that record Ultralytics' classes, clean
                  resume into the checkpoint's own run folder, offline AMP check, detector.reach's warning at set-up
- loader.py       predict.py's loader (LoadImagesAndVideos' fields) and PIL's unpatched Image.open
- inference.py    the predictor YOLO.predict builds, its batch in flight, the Detect head's export flag, weights
                  holding NaN refused at predict time
- rundirs.py      run folders (runs/detect/predict, -2, ...) claimed atomically by the `detector` command and predict.py
- exporter.py     where the exporter writes (made atomic); an export callback telling our area attention whether
                  the export is static-size
- cli.py          the `detector` command: Ultralytics' CLI entry with our trainer
Supported Ultralytics: >=8.4.190,<8.5 (pyproject.toml pins the same; tests/test_ultralytics_contract.py runs all
the checks).
"""

from __future__ import annotations


def require(needs: dict[str, bool], module: str) -> None:
    """A contract check's verdict: RuntimeError naming every assumption in `needs` (what -> does it hold?) that this
    Ultralytics breaks, and the glue module that must follow it."""
    broken = [what for what, ok in needs.items() if not ok]
    if broken:
        import ultralytics

        raise RuntimeError(f"ultralytics {ultralytics.__version__}: {'; '.join(broken)} no longer holds; "
                           f"detector.glue.{module} must be updated for this version")


def install() -> None:
    """What `import detector` does to Ultralytics: our layers for YAMLs, checkpoint loading, name lookup, dataset
    reading, the training, export and predict callbacks."""
    from . import checkpoints, data, exporter, inference, loss, names, registry

    registry.register()
    checkpoints.install()
    names.install()
    data.install()
    loss.install()
    exporter.install()
    inference.install()


def check_contracts() -> None:
    """Run every module's contract check (imports them, which installs nothing by itself)."""
    from . import (
        assigner,
        checkpoints,
        cli,
        data,
        exporter,
        inference,
        loader,
        loss,
        names,
        registry,
        rundirs,
        trainer,
    )

    for module in (registry, checkpoints, names, data, trainer, loss, assigner, loader, inference, exporter, cli,
                   rundirs):
        module.check_contract()
