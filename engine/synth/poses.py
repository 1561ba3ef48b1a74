"""Pose priors for the articulated figures: named pose families with random jitter.

A `Pose` describes the body in its own frame: L points to the person's left, F forward,
V up. Every limb segment gets an abduction angle (away from the body's midline, towards
its own side) and a flexion angle (forward swing); both 0 means hanging straight down.
`Pose.mirrored()` is the pose of the horizontally flipped picture, which is what makes
flip augmentation with a left/right joint swap exact on this data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

Limb = tuple[float, float, float, float]  # (upper abd, upper flex, lower abd, lower flex), degrees


@dataclass(frozen=True)
class Pose:
    """Body configuration. Angles in degrees; yaw 0 faces the camera, positive yaw turns
    the person towards their own left (their nose moves to image +x)."""

    yaw: float
    roll: float  # in-plane rotation of the whole figure, image plane, clockwise positive
    lean: float  # forward bend of the upper body
    left_arm: Limb
    right_arm: Limb
    left_leg: Limb
    right_leg: Limb
    kind: str = "stand"

    def mirrored(self) -> "Pose":
        """The pose whose drawing is this one's drawing flipped horizontally."""
        return replace(self, yaw=-self.yaw, roll=-self.roll,
                       left_arm=self.right_arm, right_arm=self.left_arm,
                       left_leg=self.right_leg, right_leg=self.left_leg)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _hanging_arm(rng: np.random.Generator) -> Limb:
    flex = _u(rng, -12, 12)
    return (_u(rng, 4, 18), flex, _u(rng, 2, 15), flex + _u(rng, 0, 35))


def _straight_leg(rng: np.random.Generator) -> Limb:
    flex = _u(rng, -6, 6)
    return (_u(rng, 2, 9), flex, _u(rng, 0, 6), flex - _u(rng, 0, 8))


def _stand(rng):
    return _hanging_arm(rng), _hanging_arm(rng), _straight_leg(rng), _straight_leg(rng), 0.0


def _walk(rng, swing=(15, 35), knee=(0, 35), elbow=(10, 40), lean=(0, 6)):
    s = _u(rng, *swing) * (1 if rng.random() < 0.5 else -1)
    arms = [(_u(rng, 3, 12), f, _u(rng, 2, 10), f + _u(rng, *elbow)) for f in (s, -s)]
    # The leg swinging back bends its knee; the front one stays nearly straight.
    legs = [(_u(rng, 2, 6), -f, _u(rng, 0, 4), -f - (_u(rng, *knee) if -f < 0 else _u(rng, 0, 8)))
            for f in (s, -s)]
    return arms[0], arms[1], legs[0], legs[1], _u(rng, *lean)


def _arms_raised(rng):
    arms = []
    for _ in range(2):
        abd = _u(rng, 135, 172)
        arms.append((abd, _u(rng, -10, 20), abd + _u(rng, -15, 12), _u(rng, -5, 25)))
    return arms[0], arms[1], _straight_leg(rng), _straight_leg(rng), 0.0


def _sit(rng):
    arms = []
    for _ in range(2):
        flex = _u(rng, 15, 45)
        arms.append((_u(rng, 4, 14), flex, _u(rng, 2, 10), flex + _u(rng, 35, 70)))
    legs = []
    for _ in range(2):
        flex = _u(rng, 75, 100)
        legs.append((_u(rng, 4, 16), flex, _u(rng, 0, 8), _u(rng, -12, 12)))
    return arms[0], arms[1], legs[0], legs[1], _u(rng, -5, 10)


def _wave(rng):
    up = (_u(rng, 65, 105), _u(rng, -10, 20), _u(rng, 150, 185), _u(rng, -10, 15))
    arms = [up, _hanging_arm(rng)]
    if rng.random() < 0.5:
        arms.reverse()
    return arms[0], arms[1], _straight_leg(rng), _straight_leg(rng), 0.0


def _arms_out(rng):
    arms = []
    for _ in range(2):
        abd = _u(rng, 70, 105)
        arms.append((abd, _u(rng, -15, 15), abd + _u(rng, -20, 20), _u(rng, -15, 25)))
    return arms[0], arms[1], _straight_leg(rng), _straight_leg(rng), 0.0


def _run(rng):
    return _walk(rng, swing=(35, 65), knee=(50, 100), elbow=(70, 105), lean=(8, 25))


def _jump(rng):
    arms = []
    for _ in range(2):
        abd = _u(rng, 120, 175)
        arms.append((abd, _u(rng, -10, 30), abd + _u(rng, -25, 15), _u(rng, -10, 30)))
    legs = []
    for _ in range(2):
        flex = _u(rng, 25, 75)
        legs.append((_u(rng, 5, 20), flex, _u(rng, 0, 10), flex - _u(rng, 60, 110)))
    return arms[0], arms[1], legs[0], legs[1], _u(rng, 0, 15)


def _kick(rng):
    kick = (_u(rng, 3, 15), _u(rng, 55, 100), _u(rng, 0, 10), _u(rng, 40, 95))
    legs = [kick, _straight_leg(rng)]
    if rng.random() < 0.5:
        legs.reverse()
    arms = []
    for _ in range(2):
        abd = _u(rng, 35, 85)
        arms.append((abd, _u(rng, -30, 30), abd + _u(rng, -20, 20), _u(rng, -20, 40)))
    return arms[0], arms[1], legs[0], legs[1], _u(rng, -10, 5)


def _crouch(rng):
    arms = []
    for _ in range(2):
        flex = _u(rng, 35, 80)
        arms.append((_u(rng, 5, 25), flex, _u(rng, 0, 20), flex + _u(rng, -10, 30)))
    legs = []
    for _ in range(2):
        flex = _u(rng, 55, 90)
        legs.append((_u(rng, 8, 22), flex, _u(rng, 0, 10), flex - _u(rng, 100, 140)))
    return arms[0], arms[1], legs[0], legs[1], _u(rng, 20, 40)


def _throw(rng):
    back = (_u(rng, 60, 100), _u(rng, -110, -50), _u(rng, 120, 170), _u(rng, -60, 0))
    front = (_u(rng, 10, 40), _u(rng, 40, 80), _u(rng, 0, 20), _u(rng, 50, 90))
    arms = [back, front] if rng.random() < 0.5 else [front, back]
    legs = _walk(rng, swing=(15, 30))[2:4]
    return arms[0], arms[1], legs[0], legs[1], _u(rng, 0, 12)


PoseFamily = Callable[[np.random.Generator], tuple[Limb, Limb, Limb, Limb, float]]
POSE_FAMILIES: dict[str, PoseFamily] = {
    "stand": _stand, "walk": _walk, "arms_raised": _arms_raised, "sit": _sit,
    "wave": _wave, "arms_out": _arms_out,
    "run": _run, "jump": _jump, "kick": _kick, "crouch": _crouch, "throw": _throw,
}


def sample_pose(rng: np.random.Generator, weights: dict[str, float], max_yaw_deg: float,
                max_roll_deg: float) -> Pose:
    """Draw a pose family by `weights`, then its angles, yaw and roll."""
    names = sorted(weights)
    probs = np.array([weights[n] for n in names], dtype=np.float64)
    kind = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    left_arm, right_arm, left_leg, right_leg, lean = POSE_FAMILIES[kind](rng)
    return Pose(yaw=_u(rng, -max_yaw_deg, max_yaw_deg),
                roll=_u(rng, -max_roll_deg, max_roll_deg), lean=lean,
                left_arm=left_arm, right_arm=right_arm, left_leg=left_leg,
                right_leg=right_leg, kind=kind)
