"""Synthetic COCO data: articulated people with 17 keypoints, other objects, clutter.

    from engine.synth import generate_dataset, SynthConfig
    generate_dataset(Path("data/train"), 400, seed=0)          # -> data/train/annotations.json
"""

from engine.synth.config import SynthConfig
from engine.synth.dataset import generate_dataset

__all__ = ["SynthConfig", "generate_dataset"]
