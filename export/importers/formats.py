"""What a graph from elsewhere reads and writes, as typed descriptions (no onnx here).

`distill import onnx` builds these from its flags, `distill import ultralytics` from the
export's metadata; `export.importers.wrap` checks them against the graph and wraps it.
Values are checked where the objects are made (`ValueError` about the value; the
command line turns it into one line naming the flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.coco.categories import COCO_CATEGORIES, MAX_COCO_ID, categories_for_names, coco80_categories
from engine.errors import UserError
from engine.modelcard import HEATMAP_DECODERS

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")
LABEL_MAPS = ("coco-ids", "coco80", "coco80-1based", "names")


@dataclass(frozen=True)
class InputFormat:
    """What the network reads, made from uint8 RGB bytes in the wrapper.

    name: the graph input (None: its only input); layout: NCHW or NHWC; channels: the
    order it wants, RGB or BGR. A float input gets (x * scale - mean) / std per channel,
    mean and std in the network's channel order; a uint8 input gets the bytes as they are
    (its graph normalizes itself), so it takes no scale, mean or std.
    """

    name: str | None = None
    layout: str = "NCHW"
    channels: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"channel order {self.channels!r} is not one of {', '.join(CHANNEL_ORDERS)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values each (one per channel), got {list(self.mean)} "
                             f"and {list(self.std)}")
        if self.scale <= 0 or any(s <= 0 for s in self.std):
            raise ValueError(f"scale {self.scale} and std {list(self.std)} must be positive")

    @property
    def normalizes(self) -> bool:
        """Whether scale, mean or std differ from the identity."""
        return (self.scale, tuple(self.mean), tuple(self.std)) != (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@dataclass(frozen=True)
class ViewPadding:
    """How the engine must pad views for this network (model card: pad_multiple,
    pad_value, pad_position): sides to multiples of `multiple` px (1: any size, as for a
    graph that resizes its input itself), padding of grey level `value`, the image
    centred when `center` (else in the top-left corner)."""

    multiple: int = 32
    value: int = 0
    center: bool = False

    def __post_init__(self) -> None:
        if self.multiple < 1:
            raise ValueError(f"the padding multiple must be >= 1, got {self.multiple}")
        if not 0 <= self.value <= 255:
            raise ValueError(f"the padding value must be a grey level 0..255, got {self.value}")


@dataclass(frozen=True)
class LabelMap:
    """How the network's labels become the card's categories (COCO ids where known).

    kind: "coco-ids" (labels are COCO category ids, 1..90 with gaps: TF Object Detection
    API), "coco80" (0-based contiguous indices of COCO's 80: MMDetection, Ultralytics),
    "coco80-1based" (the same from 1, 0 being background), "names" (0-based indices of
    `names`, COCO ids where every name is one of COCO's, else 1, 2, ...).
    """

    kind: str = "coco80"
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LABEL_MAPS:
            raise ValueError(f"unknown label mapping {self.kind!r}: choose from {', '.join(LABEL_MAPS)}")
        if (self.kind == "names") != bool(self.names):
            raise ValueError("class names go with the 'names' label mapping, and it needs at least one")

    def categories(self) -> list[dict]:
        """The card's categories, in the order of their indices."""
        return categories_for_names(list(self.names)) if self.kind == "names" else coco80_categories()

    def table(self) -> list[int]:
        """table[raw label] = index into `categories()`, -1 where the label names no category
        (a COCO id of none of the 80, or the background of a 1-based map); labels past the
        table's end name none either."""
        if self.kind == "names":
            return list(range(len(self.names)))
        if self.kind == "coco80":
            return list(range(len(COCO_CATEGORIES)))
        if self.kind == "coco80-1based":
            return [-1, *range(len(COCO_CATEGORIES))]
        index = {category_id: i for i, (category_id, _) in enumerate(COCO_CATEGORIES)}
        return [index.get(raw, -1) for raw in range(MAX_COCO_ID + 1)]


@dataclass(frozen=True)
class DetectorOutputs:
    """A detector's outputs, named and described.

    Either `boxes` `(B, N, 4)` (in `box_format`, input pixels or `normalized` to 0..1 of
    the input's width and height) with `scores` `(B, N)`, or `(B, N, C)` per class (the
    label is the best class), or one `dets` `(B, N, 5)` output (xyxy pixels and score, as
    MMDeploy writes). `labels` `(B, N)` (integer or float) unless the scores are per
    class; `count` `(B,)`: how many of the N rows are real (TF's num_detections); the
    rest are ignored. post_nms: the outputs come after the model's own NMS.
    """

    boxes: str | None = None
    box_format: str = "xyxy"
    normalized: bool = False
    scores: str | None = None
    labels: str | None = None
    dets: str | None = None
    count: str | None = None
    label_map: LabelMap = LabelMap()
    post_nms: bool = False

    def __post_init__(self) -> None:
        if (self.boxes is None) == (self.dets is None):
            raise ValueError("name the boxes output, or one combined detections output (x1, y1, x2, y2, score), "
                             "not both")
        if self.boxes is not None and self.scores is None:
            raise ValueError("a boxes output needs a scores output")
        if self.dets is not None:
            if self.scores is not None:
                raise ValueError("a combined detections output carries its scores: name no scores output")
            if self.labels is None:
                raise ValueError("a combined detections output needs a labels output")
            if self.box_format != "xyxy" or self.normalized:
                raise ValueError("a combined detections output holds xyxy boxes in input pixels")
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box format {self.box_format!r} is not one of {', '.join(BOX_FORMATS)}")

    @property
    def names(self) -> list[str]:
        """The graph outputs this description reads."""
        return [n for n in (self.boxes, self.scores, self.labels, self.dets, self.count) if n is not None]


@dataclass(frozen=True)
class UltralyticsOutputs:
    """An Ultralytics export's one output (model card: task detect, optionally keypoints).

    name: usually `output0`; classes: the number of names; keypoints: joints per
    candidate (0 for a detect model). end2end: the output is (B, N, 6 + 3K), NMS done
    (x1, y1, x2, y2, score, class, keypoints); otherwise (B, 4 + classes + 3K, A), one
    column per anchor (cx, cy, w, h in input pixels, per-class scores, keypoints).
    """

    name: str
    names: tuple[str, ...]
    keypoints: int = 0
    end2end: bool = False

    @property
    def classes(self) -> int:
        return len(self.names)

    @property
    def channels(self) -> int:
        """The size of the output's candidate axis."""
        return (6 if self.end2end else 4 + self.classes) + 3 * self.keypoints


@dataclass(frozen=True)
class HeatmapOutputs:
    """A top-down keypoint model's heatmaps `(B, J, h, w)` (model card: task keypoints):
    crop_padding: how the crop grows from a person box; decoder: the heatmap peak
    refinement (engine.modelcard.HEATMAP_DECODERS)."""

    heatmaps: str
    crop_padding: float = 1.25
    decoder: str = "quarter"

    def __post_init__(self) -> None:
        if self.crop_padding < 1.0:
            raise ValueError(f"the crop padding must be >= 1, got {self.crop_padding}")
        if self.decoder not in HEATMAP_DECODERS:
            raise ValueError(f"heatmap decoder {self.decoder!r} is not one of {', '.join(HEATMAP_DECODERS)}")


def read_names(path: Path) -> tuple[str, ...]:
    """Class names, one a line, label 0 first (blank lines skipped)."""
    try:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as error:
        raise UserError(f"cannot read the class names file {path}: {error.strerror or error}") from None
    if not names:
        raise UserError(f"the class names file {path} names no class")
    if len(set(names)) != len(names):
        raise UserError(f"the class names file {path} repeats a name")
    return names
