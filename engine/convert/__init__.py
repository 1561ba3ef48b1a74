"""Format conversion: a COCO labels file (`distill select`, or any COCO ground truth) into
the formats review tools import, so a person can correct generated labels where they
already work.

    distill convert --labels LABELS.json --to yolo --out DIR          # Ultralytics txt + data.yaml
    distill convert --labels LABELS.json --to labelstudio --out DIR --images IMAGES   # tasks + config

The files read in the order the data flows: `read` (load, validate, clip to the image),
`yolo` (writer and the reader `read_yolo`), `labelstudio`, `cli`.
"""

from engine.convert.read import LabelSet, load_labels
from engine.convert.yolo import YoloLabel, read_yolo, write_yolo
from engine.convert.labelstudio import write_labelstudio

__all__ = ["LabelSet", "YoloLabel", "load_labels", "read_yolo", "write_labelstudio", "write_yolo"]
