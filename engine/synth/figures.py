"""Articulated person figures with the 17 COCO keypoints, in COCO order.

The body is posed in its own 3-D frame (L to the person's left, F forward, V up),
projected orthographically after a yaw turn, so left and right are told apart the way a
photograph tells them: by where the face looks (nose, eyes, hair at the back of the
head, feet pointing forward) and by depth (far limbs darker and drawn behind the torso).
Both cues survive a horizontal flip, unlike a fixed "left is blue" colour code, which a
flip with left/right swap would turn into noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.coco.schema import KEYPOINT_NAMES, NUM_KEYPOINTS
from engine.synth.draw import Circle, Color, Drawing, Polygon, Segment, mix, shade
from engine.synth.poses import Limb, Pose

# Body proportions as fractions of the standing height (head top to soles).
HEAD_R = 0.07
NECK = 0.12        # shoulder midpoint to head centre
TORSO = 0.30       # pelvis to shoulder midpoint
SHOULDER_HALF = 0.11
HIP_HALF = 0.075
UPPER_ARM, FOREARM = 0.16, 0.15
THIGH, SHIN = 0.25, 0.25
# Limb thicknesses (full width) as fractions of the height.
THICK = {"upper_arm": 0.05, "forearm": 0.042, "thigh": 0.07, "shin": 0.055}

_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
# Face points on the head sphere: (azimuth, elevation, radius) in radians / head radii;
# azimuth 0 is the nose direction, positive towards the person's left.
_FACE = {
    "nose": (0.0, -0.15, 1.0),
    "left_eye": (0.42, 0.12, 0.92), "right_eye": (-0.42, 0.12, 0.92),
    "left_ear": (1.65, 0.0, 0.95), "right_ear": (-1.65, 0.0, 0.95),
}
# A face point whose depth (in head radii) is below this is behind the head: not drawn
# and labelled v=1 (occluded, position still defined).
HIDDEN_DEPTH = -0.1


@dataclass(frozen=True)
class Outfit:
    """Colours (BGR) of one figure."""

    skin: Color
    hair: Color
    shirt: Color
    pants: Color
    shoes: Color
    long_sleeves: bool


@dataclass
class Figure:
    """A drawn person: `keypoints` (17, 2) float64 image xy, `hidden` (17,) bool for
    self-occluded joints, and the primitives to paint."""

    keypoints: np.ndarray
    hidden: np.ndarray
    drawing: Drawing


def _direction(abd: float, flex: float, side: float) -> np.ndarray:
    """Unit segment direction in the body frame (L, F, V); side +1 left, -1 right."""
    a, f = math.radians(abd), math.radians(flex)
    return np.array([side * math.sin(a), math.cos(a) * math.sin(f), -math.cos(a) * math.cos(f)])


def _lean(vectors: np.ndarray, lean_deg: float) -> np.ndarray:
    """Rotate body-frame vectors (..., 3) forward by `lean_deg` about the L axis."""
    a = math.radians(lean_deg)
    out = vectors.copy()
    out[..., 1] = vectors[..., 1] * math.cos(a) + vectors[..., 2] * math.sin(a)
    out[..., 2] = -vectors[..., 1] * math.sin(a) + vectors[..., 2] * math.cos(a)
    return out


def skeleton_3d(pose: Pose) -> dict[str, np.ndarray]:
    """Body-frame joint positions (3,) for a figure of unit height, pelvis at the origin.

    Keys: the 12 body keypoint names, plus "head", "neck_base" and the two toe tips.
    """
    joints: dict[str, np.ndarray] = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        joints[f"{side}_shoulder"] = _lean(np.array([sign * SHOULDER_HALF, 0.0, TORSO]), pose.lean)
        joints[f"{side}_hip"] = np.array([sign * HIP_HALF, 0.0, 0.0])
        arm: Limb = pose.left_arm if sign > 0 else pose.right_arm
        leg: Limb = pose.left_leg if sign > 0 else pose.right_leg
        # Arms move with the torso's lean; legs are placed in the world frame.
        elbow = joints[f"{side}_shoulder"] + UPPER_ARM * _lean(_direction(arm[0], arm[1], sign), pose.lean)
        joints[f"{side}_elbow"] = elbow
        joints[f"{side}_wrist"] = elbow + FOREARM * _lean(_direction(arm[2], arm[3], sign), pose.lean)
        knee = joints[f"{side}_hip"] + THIGH * _direction(leg[0], leg[1], sign)
        joints[f"{side}_knee"] = knee
        ankle = knee + SHIN * _direction(leg[2], leg[3], sign)
        joints[f"{side}_ankle"] = ankle
        joints[f"{side}_toe"] = ankle + np.array([0.0, 0.07, -0.015])
    joints["neck_base"] = _lean(np.array([0.0, 0.0, TORSO]), pose.lean)
    joints["head"] = _lean(np.array([0.0, 0.0, TORSO + NECK]), pose.lean)
    return joints


class _Projector:
    """Body frame -> image: yaw turn, orthographic projection, roll, scale, translate."""

    def __init__(self, pose: Pose, height: float, origin: tuple[float, float]):
        self.cy, self.sy = math.cos(math.radians(pose.yaw)), math.sin(math.radians(pose.yaw))
        r = math.radians(pose.roll)
        self.rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
        self.height = height
        self.origin = np.asarray(origin, dtype=np.float64)

    def depth(self, p: np.ndarray) -> float:
        """Towards the camera is positive, in figure heights."""
        return float(-p[0] * self.sy + p[1] * self.cy)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        x = p[0] * self.cy + p[1] * self.sy
        xy = self.rot @ np.array([x, -p[2]])
        return self.origin + self.height * xy


def _face_point(proj: _Projector, pose: Pose, head: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    az, el, rad = _FACE[name]
    offset = HEAD_R * rad * np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el),
                                      math.sin(el)])
    return proj(head + offset), proj.depth(offset) / HEAD_R


def build_figure(pose: Pose, outfit: Outfit, height: float, origin: tuple[float, float]) -> Figure:
    """Pose, colour and place a figure of `height` px whose pelvis is at `origin` (xy px)."""
    proj = _Projector(pose, height, origin)
    joints = skeleton_3d(pose)
    keypoints = np.zeros((NUM_KEYPOINTS, 2), dtype=np.float64)
    hidden = np.zeros(NUM_KEYPOINTS, dtype=bool)
    for name, point in joints.items():
        if name in _K:
            keypoints[_K[name]] = proj(point)
    face_depth = {}
    for name in _FACE:
        keypoints[_K[name]], face_depth[name] = _face_point(proj, pose, joints["head"], name)
        hidden[_K[name]] = face_depth[name] < HIDDEN_DEPTH

    # Painter's algorithm over body parts: (depth, order, drawing).
    parts: list[tuple[float, int, Drawing]] = []

    def limb_part(a: str, b: str, thickness: float, color: Color, bias: float = 0.0) -> None:
        depth = 0.5 * (proj.depth(joints[a]) + proj.depth(joints[b]))
        # Far limbs darker, near ones slightly brighter: the depth cue for left/right.
        tone = shade(color, float(np.clip(1.0 + 2.5 * depth, 0.55, 1.15)))
        d = Drawing([Segment(tuple(proj(joints[a])), tuple(proj(joints[b])), thickness * height, tone)])
        parts.append((depth + bias, len(parts), d))

    for side in ("left", "right"):
        sleeve = outfit.shirt if outfit.long_sleeves else outfit.skin
        limb_part(f"{side}_hip", f"{side}_knee", THICK["thigh"], outfit.pants)
        limb_part(f"{side}_knee", f"{side}_ankle", THICK["shin"], outfit.pants)
        limb_part(f"{side}_ankle", f"{side}_toe", THICK["shin"] * 0.8, outfit.shoes, bias=0.001)
        # Arms sit in front of a frontal torso (bias), behind it once turned away.
        limb_part(f"{side}_shoulder", f"{side}_elbow", THICK["upper_arm"], outfit.shirt, bias=0.02)
        limb_part(f"{side}_elbow", f"{side}_wrist", THICK["forearm"], sleeve, bias=0.021)
        wrist = joints[f"{side}_wrist"]
        hand = Drawing([Circle(tuple(proj(wrist)), 0.028 * height,
                               shade(outfit.skin, float(np.clip(1 + 2.5 * proj.depth(wrist), 0.55, 1.15))))])
        parts.append((proj.depth(wrist) + 0.022, len(parts), hand))

    parts.append((0.0, len(parts), _torso(proj, pose, joints, outfit, height)))
    parts.append((0.01, len(parts), _head(proj, pose, joints, outfit, height, keypoints, hidden)))
    drawing = Drawing()
    for _, _, part in sorted(parts, key=lambda item: (item[0], item[1])):
        drawing.extend(part)
    return Figure(keypoints=keypoints, hidden=hidden, drawing=drawing)


def _torso(proj: _Projector, pose: Pose, joints, outfit: Outfit, height: float) -> Drawing:
    top, bottom = proj(joints["neck_base"]), proj(np.zeros(3))
    spine = top - bottom
    perp = np.array([-spine[1], spine[0]]) / (np.linalg.norm(spine) + 1e-9)
    # Half-widths shrink with |cos yaw| but keep the body's depth in profile.
    c = abs(math.cos(math.radians(pose.yaw)))
    w_top = max(SHOULDER_HALF * c + 0.025, 0.07) * height
    w_bottom = max(HIP_HALF * c + 0.03, 0.065) * height
    shirt = np.array([top + perp * w_top, top - perp * w_top,
                      bottom + 0.35 * (top - bottom) - perp * w_bottom * 1.05,
                      bottom + 0.35 * (top - bottom) + perp * w_bottom * 1.05])
    pants = np.array([bottom + 0.4 * (top - bottom) + perp * w_bottom,
                      bottom + 0.4 * (top - bottom) - perp * w_bottom,
                      bottom - perp * w_bottom, bottom + perp * w_bottom])
    neck = Segment(tuple(top), tuple(proj(joints["head"])), 0.045 * height, shade(outfit.skin, 0.9))
    return Drawing([neck, Polygon(pants, outfit.pants), Polygon(shirt, outfit.shirt)])


def _head(proj: _Projector, pose: Pose, joints, outfit: Outfit, height: float,
          keypoints: np.ndarray, hidden: np.ndarray) -> Drawing:
    center = proj(joints["head"])
    r = HEAD_R * height
    facing = math.sin(math.radians(pose.yaw))  # nose towards image +x when positive
    roll = math.radians(pose.roll)
    rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    hair_c = center + rot @ np.array([-0.32 * facing * r, -0.22 * r])
    face_c = center + rot @ np.array([0.1 * facing * r, 0.1 * r])
    d = Drawing([Circle(tuple(hair_c), 0.98 * r, outfit.hair),
                 Circle(tuple(face_c), 0.86 * r, outfit.skin)])
    for name in ("left_ear", "right_ear"):
        if not hidden[_K[name]]:
            d.add(Circle(tuple(keypoints[_K[name]]), 0.22 * r, shade(outfit.skin, 0.8)))
    for name in ("left_eye", "right_eye"):
        if not hidden[_K[name]]:
            d.add(Circle(tuple(keypoints[_K[name]]), 0.16 * r, (25, 25, 25)))
    nose = keypoints[_K["nose"]]
    d.add(Circle(tuple(nose), 0.2 * r, mix(outfit.skin, (60, 60, 200), 0.35)))
    return d


def figure_extent(pose: Pose, height: float) -> tuple[float, float, float, float]:
    """Approximate (x1, y1, x2, y2) of the figure drawn with its pelvis at (0, 0), px.

    Used to place a figure before drawing it; joints padded by the thickest part.
    """
    fig_proj = _Projector(pose, height, (0.0, 0.0))
    points = np.array([fig_proj(p) for p in skeleton_3d(pose).values()])
    pad = (HEAD_R + 0.01) * height
    return (float(points[:, 0].min() - pad), float(points[:, 1].min() - pad),
            float(points[:, 0].max() + pad), float(points[:, 1].max() + pad))
