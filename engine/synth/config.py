"""Difficulty knobs of the synthetic dataset, in one dataclass.

Every number that decides how hard the data is (object sizes, counts, occlusion, noise,
blur, clutter) lives here so that the trainer can tune the task without touching the
drawing code. Sizes are in pixels of the written image unless a name says `_frac`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import UserError


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of `generate_dataset`; the defaults give a learnable, non-saturated task."""

    # Image size: the longer side is uniform in this range, the aspect ratio
    # (width / height) log-uniform in `aspect_range`, so portrait and landscape both occur.
    long_side_range: tuple[int, int] = (320, 512)
    aspect_range: tuple[float, float] = (0.56, 1.78)

    # Counts per image (inclusive ranges, uniform).
    persons_range: tuple[int, int] = (0, 4)
    objects_range: tuple[int, int] = (0, 3)
    distractors_range: tuple[int, int] = (2, 8)
    # Probability that an image holds no person at all (negatives for the detector).
    no_person_prob: float = 0.08

    # Person height (head top to feet when standing), log-uniform between
    # `min_person_px` and `max_person_frac` of the image height.
    min_person_px: float = 14.0
    max_person_frac: float = 0.6
    # Other categories: longer side log-uniform between `min_object_px` and
    # `max_object_frac` of the image's shorter side.
    min_object_px: float = 10.0
    max_object_frac: float = 0.45
    # Distractors (not annotated): size as a fraction of the shorter side.
    distractor_frac_range: tuple[float, float] = (0.03, 0.3)

    # Annotated objects are re-placed (up to `placement_tries`) while their box IoU with
    # an already placed one exceeds this, so that no object hides another completely.
    max_overlap_iou: float = 0.35
    # ... and while more than this fraction of the smaller box lies inside the other
    # (IoU alone lets a small box sit entirely inside a large one).
    max_overlap_cover: float = 0.6
    placement_tries: int = 12
    # An annotated object of which less than this fraction stays visible after all
    # painting counts as hidden and is not annotated (a stray hand is not a person).
    min_visible_frac: float = 0.25
    # Probability that an object is allowed to leave the frame partly (truncation).
    truncation_prob: float = 0.15
    # Probability, per person, of an occluder drawn over one of its joints, and its
    # size as a fraction of the person's height.
    occlusion_prob: float = 0.3
    occluder_frac_range: tuple[float, float] = (0.15, 0.4)
    # Probability of a crowd region (several small people, one iscrowd=1 annotation).
    crowd_prob: float = 0.05
    crowd_size_range: tuple[int, int] = (4, 8)

    # Pose: maximum yaw (0 = facing the camera); beyond 90 degrees the figure turns
    # slightly away, never fully: without a face, left and right would be a guess.
    max_yaw_deg: float = 100.0
    max_roll_deg: float = 12.0

    # Photometric: Gaussian pixel noise std (uniform in range), blur probability and
    # sigma range, JPEG quality.
    noise_std_range: tuple[float, float] = (1.0, 6.0)
    blur_prob: float = 0.2
    blur_sigma_range: tuple[float, float] = (0.4, 1.2)
    jpeg_quality: int = 90

    def validate(self) -> None:
        """Raise `UserError` naming the first knob whose value cannot work."""
        for name in ("long_side_range", "aspect_range", "persons_range", "objects_range",
                     "distractors_range", "distractor_frac_range", "occluder_frac_range",
                     "crowd_size_range", "noise_std_range", "blur_sigma_range"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise UserError(f"SynthConfig.{name} must be 0 <= low <= high, got {low, high}")
        if self.long_side_range[0] < 64:
            raise UserError("SynthConfig.long_side_range must start at 64 px or more")
        for name in ("no_person_prob", "truncation_prob", "occlusion_prob", "crowd_prob",
                     "blur_prob", "max_overlap_iou", "max_overlap_cover", "min_visible_frac"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"SynthConfig.{name} must be a probability, got {value}")
        if not 1 <= self.jpeg_quality <= 100:
            raise UserError(f"SynthConfig.jpeg_quality must be 1..100, got {self.jpeg_quality}")
        if not 0 < self.max_person_frac <= 1 or not 0 < self.max_object_frac <= 1:
            raise UserError("SynthConfig max_*_frac values must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists), recorded in the dataset's `info`."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthConfig":
        """Inverse of `to_dict`; unknown keys are a `UserError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown SynthConfig keys: {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
