"""Train a detector with the Ultralytics trainer.

    python train.py                                   # fine-tune the shipped n model on the bundled coco8
    python train.py --model yolo11n-an.yaml           # the n-scale attention-neck model from scratch
    python train.py --model yolo11s-an.yaml --data coco128.yaml --epochs 100 --device 0,1
    python train.py --model yolo12n.yaml --attn flash lr0=0.005 mosaic=0.5   # YOLO12 on SDPA; extra key=value
    python train.py --resume runs/detect/train/weights/last.pt
    python train.py --device 0 --precision bf16                # bfloat16 autocast, no loss scaling (sm80+ GPUs)

Any Ultralytics training setting not listed in --help can be passed as key=value, as with the `yolo` CLI.

Before anything is written, every argument and key=value setting (by Ultralytics' own rules), the model, the attention
kernel, the precision, the device, the dataset and a writable --project are checked: a problem that would stop
training stops here, exit status 2, with one line `train.py: error: ...` (an adjusted value gets a warning line).
The run folder is claimed atomically (<name>-2, -3 if taken, even by a run started at the same moment); --resume
writes into the folder the checkpoint is in (refused if that folder holds a symbolic link, which writes would follow),
with the settings the checkpoint holds: --data, --imgsz, --batch, --device, --workers and the key=value settings
Ultralytics' resume takes change them, any other option is refused. A write that fails during training (a full disk:
checked before each checkpoint, which needs room for one new file) stops it with one line, exit status 1, naming what
last.pt holds; so does running out of memory.

Nothing in the files given runs code: checkpoints load against an allow-list of model classes, a model YAML's (or a
checkpoint's) activation is not evaluated, a dataset YAML's download script is not run (a missing split is an error),
unless you trust them: DETECTOR_TRUST_PICKLE=1 (detector/trust.py).

Label files are checked line by line: a bad line is skipped with `train.py: warning: <file>:<line>: <problem>, line
skipped` (Ultralytics alone would drop the whole image), and images without labels are counted as backgrounds (a
warning names label files Ultralytics does not read because of their letter case, x.TXT).
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded: skip Ultralytics' connectivity probes
    from detector import training

    sys.exit(training.main(description=__doc__))
