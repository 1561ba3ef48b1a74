"""The two visual distributions: everyday scenes (default) and `--shift` sports frames.

The shifted style changes what a teacher trained on the default style has never seen:
the palette (saturated team kits instead of muted clothes), the backgrounds (pitches,
courts, tracks, dark arenas) and the pose prior (running, jumping, kicking), the analog
of the paper's COCO -> Sports-1M transfer. The left/right cues of the figures stay the
same, so the task is the same task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.synth.draw import Color
from engine.synth.figures import Outfit


@dataclass(frozen=True)
class Style:
    name: str
    clothes: tuple[Color, ...]          # BGR
    skins: tuple[Color, ...]
    hairs: tuple[Color, ...]
    backgrounds: dict[str, float]       # background kind -> weight
    poses: dict[str, float]             # pose family -> weight
    categories: dict[int, float]        # COCO category id (not person) -> weight
    clutter: tuple[Color, ...]          # distractor colours
    team_kits: bool                     # shirts and pants from a couple of kits per image


_SKINS = ((150, 180, 225), (120, 160, 210), (90, 130, 185), (60, 95, 150), (45, 70, 110),
          (170, 200, 235))
_HAIRS = ((20, 20, 20), (30, 45, 70), (40, 80, 130), (120, 160, 200), (90, 90, 90))

DEFAULT = Style(
    name="everyday",
    clothes=((120, 90, 60), (70, 70, 70), (160, 160, 150), (60, 80, 120), (90, 120, 90),
             (140, 110, 150), (50, 50, 90), (180, 170, 140), (100, 100, 140), (40, 40, 40),
             (130, 140, 170), (80, 60, 40)),
    skins=_SKINS,
    hairs=_HAIRS,
    backgrounds={"gradient": 1.0, "value_noise": 1.5, "stripes": 1.0, "blobs": 1.5, "tiles": 0.7},
    poses={"stand": 0.3, "walk": 0.25, "arms_raised": 0.1, "sit": 0.15, "wave": 0.1,
           "arms_out": 0.1},
    categories={37: 1.0, 13: 1.0, 38: 1.0, 72: 1.0},
    clutter=((90, 110, 130), (150, 140, 120), (70, 90, 70), (120, 120, 160), (60, 60, 60),
             (170, 170, 170), (100, 80, 110), (40, 70, 110)),
    team_kits=False,
)

SHIFTED = Style(
    name="sports",
    clothes=((0, 0, 230), (230, 60, 0), (0, 200, 255), (0, 170, 0), (255, 255, 255),
             (200, 0, 200), (255, 200, 0), (20, 20, 20), (0, 120, 255), (120, 0, 60)),
    skins=_SKINS,
    hairs=_HAIRS,
    backgrounds={"pitch": 1.5, "court": 1.2, "track": 1.0, "arena": 1.0},
    poses={"run": 0.3, "jump": 0.2, "kick": 0.15, "crouch": 0.15, "throw": 0.1, "stand": 0.1},
    categories={37: 2.5, 13: 0.4, 38: 0.5, 72: 0.6},
    clutter=((255, 255, 255), (0, 220, 255), (0, 0, 200), (200, 200, 0), (30, 30, 30),
             (0, 140, 255)),
    team_kits=True,
)


def style_for(shift: bool) -> Style:
    return SHIFTED if shift else DEFAULT


def _pick(rng: np.random.Generator, colors: tuple[Color, ...]) -> Color:
    return colors[int(rng.integers(len(colors)))]


def _jitter(rng: np.random.Generator, color: Color, amount: float = 18) -> Color:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)  # type: ignore


def team_kits(rng: np.random.Generator, style: Style) -> list[tuple[Color, Color]]:
    """Two (shirt, pants) kits for one sports image; unused in the default style."""
    idx = rng.choice(len(style.clothes), size=4, replace=False)
    return [(style.clothes[idx[0]], style.clothes[idx[1]]),
            (style.clothes[idx[2]], style.clothes[idx[3]])]


def sample_outfit(rng: np.random.Generator, style: Style,
                  kits: list[tuple[Color, Color]] | None = None) -> Outfit:
    """Clothes and skin for one figure; in sports frames most people wear a team kit."""
    if kits and rng.random() < 0.85:
        shirt, pants = kits[int(rng.integers(len(kits)))]
        shirt, pants = _jitter(rng, shirt, 8), _jitter(rng, pants, 8)
    else:
        shirt, pants = _jitter(rng, _pick(rng, style.clothes)), _jitter(rng, _pick(rng, style.clothes))
    return Outfit(skin=_jitter(rng, _pick(rng, style.skins), 10),
                  hair=_jitter(rng, _pick(rng, style.hairs), 8),
                  shirt=shirt, pants=pants,
                  shoes=_jitter(rng, (30, 30, 30) if rng.random() < 0.6 else (220, 220, 220), 10),
                  long_sleeves=bool(rng.random() < 0.5))
