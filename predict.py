"""Run a detector on images, folders, globs, videos, webcams, streams or lists of paths, with a .pt or an .onnx model.

    python predict.py                                   # shipped weights (docs/weights.md) on data/coco8 val images
    python predict.py photo.jpg clips/ "shots/*.png" talk.mp4 --weights best.onnx --save-txt --save-json
    python predict.py 0 --weights best.pt --show        # webcam 0
    python predict.py list.txt --weights best.pt        # a .txt list: one file, folder or glob a line

Output goes to runs/predict/<name> (incremented), as with Ultralytics: annotated images and videos (same fps and
size), optional YOLO-format labels with confidences (--save-txt), and optional detections.json (--save-json, boxes in
the original image's pixels, written atomically). On stdout: one line per image, one per video or stream when it
ends (frames and detections, not a line per frame), and a last line `summary: N ok, M failed; ...`. A progress bar
over images and video frames goes to stderr when it is a terminal.

Bad input does not stop the run. Each source or file that cannot be used gets one line on stderr and is skipped:
    predict.py: error: source '<path>': <what is wrong>; skipped
(no such file, empty folder, empty or unreadable file, not an image, corrupt or truncated image, a video that does
not open, a webcam index that does not exist, a file that fails during prediction). A video that ends before the
frame count in its header (truncated) is predicted on the frames that decode, with one warning line, and counted as
incomplete. Images larger than 25 MP are decoded at 1/2, 1/4 or 1/8 scale to bound memory (the annotated copy has
that size; labels and detections.json keep the original's coordinates), and above 268 MP refused (see
detector/sources.py). An .onnx exported with a fixed input size runs at that size: a different --imgsz is ignored
with a warning.

Exit status:
    0    every input predicted in full
    1    at least one input predicted, and some failed or were incomplete (the summary counts them)
    2    nothing predicted: bad arguments, weights that do not load (reported before anything is written), or every
         input failed
    130  interrupted (Ctrl-C); the summary and detections.json cover what was done
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded: skip Ultralytics' connectivity probes
    from detector import predicting

    try:
        sys.exit(predicting.main(description=__doc__))
    except KeyboardInterrupt:  # before predicting started (main reports one during prediction itself)
        print("predict.py: interrupted", file=sys.stderr)
        sys.exit(130)
