"""Run a detector on images, folders, globs, videos, webcams, streams or lists of paths, with a .pt or an .onnx model
or an OpenVINO model folder.

    python predict.py                                   # shipped weights (docs/weights.md) on data/coco8 val images
    python predict.py photo.jpg clips/ "shots/*.png" talk.mp4 --weights best.onnx --save-txt --save-json
    python predict.py 0 --weights best.pt --show        # webcam 0
    python predict.py list.txt --weights best.pt        # a .txt list: one file, folder or glob a line
    python predict.py clip.mp4 --weights best_openvino_model/   # OpenVINO on the CPU (python -m detector.export)

Predictions are the ones `YOLO(weights).predict(source)` and `detector predict model=weights source=...` give: the
same predictor, image size (the one the weights were trained or exported at, unless --imgsz), letterbox and
thresholds. Output goes where Ultralytics puts it: runs/detect/predict, then predict-2, predict-3, ... (--project,
--name), each folder claimed as it is chosen, so two runs started together never share one: annotated images and
videos (.mp4, same fps; an odd width or height padded by one pixel; .avi with a warning where OpenCV has no MP4
encoder), optional YOLO-format labels with confidences (--save-txt), and optional detections.json (--save-json, boxes
in the original image's pixels). Every file is written atomically, and a source's files are kept only if it was
predicted. On stdout: the weights and the size they predict at, one line per image, one per video or stream when it
ends (frames and detections, not a line per frame), and a last line `summary: N ok, M failed; ...`. A progress bar
over images and video frames goes to stderr when it is a terminal.

Every argument is checked before any work: a bad one is one line `predict.py: error: ...` naming it and what it
accepts, exit status 2; an adjusted one (--imgsz rounded to the stride, --half on a CPU) a warning line. A path that
exists is that file whatever its name (only a missing one is a glob, a webcam index or a URL); a file reached twice
is predicted once; the URL of an image or video is downloaded into the run folder. Bad input does not stop the run.
Each source or file that cannot be used gets one line on stderr and is skipped:
    predict.py: error: source '<path>': <what is wrong>; skipped
(no such file, empty folder, empty or unreadable file, not a regular file (a FIFO, device or socket, or a symlink to
one: never opened), not an image, corrupt or truncated image, a video that does not open, a webcam index that does not
exist, a file that fails during prediction). A video that ends before the frame count in its header (truncated) is
predicted on the frames that decode, with one warning line, and counted as incomplete. A multi-page TIFF is predicted
on its first page, with a warning. Images larger than 25 MP are decoded at 1/2, 1/4 or 1/8 scale to bound memory (the
annotated copy has that size; labels and detections.json keep the original's coordinates), and above 268 MP refused
(see detector/sources.py). An .onnx or OpenVINO model exported with a fixed input size runs at that size: a different
--imgsz is ignored with a warning. OpenVINO models run on the CPU (a --device other than cpu is an error).

Exit status:
    0    every input predicted in full
    1    at least one input predicted, and some failed or were incomplete (the summary counts them)
    2    nothing predicted: bad arguments, weights that do not load, are corrupt or hold NaN or infinite values
         (reported before anything is written), a --project where nothing can be created, or every input failed
    130  interrupted (Ctrl-C); the summary and detections.json cover what was done
    143  terminated (SIGTERM, as a scheduler or `docker stop` sends): the same as Ctrl-C; 128 + the signal, as a shell
         reports it, so the caller can tell its own stop request from a failure
A write that fails (a full disk) stops the run with one line `predict.py: error: cannot write '<file>': <why>;
stopped`; what was saved before stays whole, detections.json lists it, and the summary counts it (status 1, or 2).
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded: skip Ultralytics' connectivity probes
    from detector import predict_args

    arguments = predict_args.parse_args(description=__doc__)  # --help ends here: torch is not imported yet
    try:
        from detector import predicting

        sys.exit(predicting.main(args=arguments))
    except KeyboardInterrupt:  # before main started (main reports one itself, and SIGTERM as 143)
        print("predict.py: interrupted", file=sys.stderr)
        sys.exit(130)
