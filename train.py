"""Train a detector with the Ultralytics trainer.

    python train.py                                   # fine-tune the shipped n model on the bundled coco8
    python train.py --model yolo11n-an.yaml           # the n-scale attention-neck model from scratch
    python train.py --model yolo11s-an.yaml --data coco128.yaml --epochs 100 --device 0,1
    python train.py --model yolo12n.yaml --attn flash lr0=0.005 mosaic=0.5   # YOLO12 on SDPA; extra key=value
    python train.py --resume runs/detect/train/weights/last.pt
    python train.py --device 0 --precision bf16                # bfloat16 autocast, no loss scaling (sm80+ GPUs)

Any Ultralytics training setting not listed in --help can be passed as key=value, as with the `yolo` CLI.

Before anything is written, the model, the attention kernel, the precision and the dataset are checked: a problem
that would stop training stops here, exit status 2, with one line `train.py: error: ...`. Label files are checked
line by line: a bad line is skipped with `train.py: warning: <file>:<line>: <problem>, line skipped` (Ultralytics
alone would drop the whole image), and images without labels are counted as backgrounds.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded: skip Ultralytics' connectivity probes
    from detector import training

    sys.exit(training.main(description=__doc__))
