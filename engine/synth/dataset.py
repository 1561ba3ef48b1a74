"""Write a synthetic COCO dataset: `out_dir/images/*.jpg` and `out_dir/annotations.json`.

Image `i` draws all its randomness from its own generator seeded by (seed, shift, i), so
the bytes of an image depend only on those three values and the config: two runs with
the same seed write identical files, and a larger N extends a smaller one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.atomic import write_json_atomically
from engine.coco.schema import KEYPOINT_NAMES, PERSON_CATEGORY_ID, SKELETON
from engine.errors import UserError
from engine.synth.config import SynthConfig
from engine.synth.scene import compose_scene
from engine.synth.shapes import OBJECT_CATEGORIES
from engine.synth.styles import style_for

# Show a progress bar only when generation takes long enough to wonder about.
PROGRESS_MIN_IMAGES = 50


def coco_categories() -> list[dict]:
    """The category list: person (id 1) with keypoints and skeleton, then the objects."""
    person = {"id": PERSON_CATEGORY_ID, "name": "person", "supercategory": "person",
              "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON]}
    others = [{"id": cid, "name": name, "supercategory": sup}
              for cid, (name, sup) in sorted(OBJECT_CATEGORIES.items())]
    return [person, *others]


def _prepare_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a directory")
    images = out_dir / "images"
    try:
        images.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {images}: {error.strerror}") from error
    return images


def generate_dataset(out_dir: Path, num_images: int, seed: int, shift: bool = False,
                     config: SynthConfig | None = None) -> Path:
    """Draw `num_images` images and write them with their COCO annotations.

    Returns the path of `out_dir/annotations.json`. Boxes are xywh in pixels (tight box
    of the whole drawn object, clipped to the image); `area` is the visible pixel count.
    """
    config = config or SynthConfig()
    config.validate()
    if int(num_images) < 1:
        raise UserError(f"the number of images must be at least 1, got {num_images}")
    if int(seed) < 0:
        raise UserError(f"the seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    images_dir = _prepare_out_dir(out_dir)
    style = style_for(shift)
    prefix = "shift" if shift else "synth"

    images, annotations = [], []
    for index in tqdm(range(num_images), desc=f"synth {style.name}", unit="img",
                      disable=num_images <= PROGRESS_MIN_IMAGES):
        rng = np.random.default_rng([int(seed), int(shift), index])
        scene = compose_scene(rng, config, style)
        name = f"{prefix}_{index:06d}.jpg"
        ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:  # pragma: no cover - cv2 fails only on impossible inputs
            raise RuntimeError(f"JPEG encoding failed for {name}")
        (images_dir / name).write_bytes(encoded.tobytes())
        height, width = scene.image.shape[:2]
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": int(width), "height": int(height),
                       "background": scene.background})
        for ann in scene.annotations:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})

    dataset = {
        "info": {"description": f"distill synthetic {style.name} data", "seed": int(seed),
                 "shift": bool(shift), "config": config.to_dict(),
                 "bbox": "tight box of the whole drawn object, clipped to the image",
                 "area": "visible pixel count (segmentation area)"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    path = out_dir / "annotations.json"
    write_json_atomically(path, dataset, separators=(",", ":"))
    return path
