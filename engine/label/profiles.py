"""Whether a model's optimization profiles take every input a run will feed it.

A TensorRT engine takes only the input shapes of its optimization profiles: per call,
the backend picks a profile whose [min, max] box holds the input
(engine.backends.tensorrt_backend.choose_profile) and fails when none does. The shapes a
run feeds follow from the plan, the batch size and the model's card alone, so an engine
that cannot take them all is refused when the models open, before any image is read,
naming the passes it cannot serve.

The views of a pass of shorter side s with the longer side capped at M (DESIGN.md,
Conventions), padded to multiples of t (the detector's largest stride, or the padding
multiple its card names): an image whose
longer side stays within M at that scale gets shorter side s and a longer side anywhere
from s to M; a more elongated one is capped, longer side M and shorter side anything
below s (down to 1 px). Portrait images give the same shapes transposed, and every batch
size from 1 to the run's occurs (the last batch of a shape is short). The keypoint model
sees its card's fixed crop size in batches of 1 to the run's batch size.

A detector whose graph takes one fixed input size (`fixed_input` in its card) gets every
view padded to that size, so each view must fit in it: any image's, at any pass, exactly
when the plan's longer-side cap is no larger than the fixed size's shorter side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.backends.base import ShapeRange
from engine.backends.tensorrt_backend import fitting_profiles
from engine.errors import UserError
from engine.label.views import Pass, TransformPlan
from engine.modelcard import ModelCard
from engine.scaling import round_up


def pass_shapes(scale: int, max_size: int, stride: int) -> list[tuple[int, int]]:
    """Every padded view size (H, W) in px that a pass of shorter side `scale` gives some
    image, with the longer side capped at `max_size` and sides padded to multiples of
    `stride` (module docstring): first those of images within the cap, then those of
    images so elongated that the cap shrinks them. Mirroring does not change a size."""
    short = round_up(min(scale, max_size), stride)
    long = round_up(max_size, stride)
    within_cap = [(short, side) for side in range(short, long + 1, stride)]
    capped = [(side, long) for side in range(stride, short + 1, stride)]
    return list(dict.fromkeys(shape for a, b in within_cap + capped for shape in ((a, b), (b, a))))


def first_unserved(profiles: Sequence[ShapeRange], item: tuple[int, ...], batch_size: int) -> tuple[int, ...] | None:
    """The first input (b, *item), b = 1 .. batch_size, that no profile takes; None when
    every one fits some profile. item: one sample's shape, e.g. (3, H, W)."""
    # The smallest batch no profile takes is 1 or one past some profile's largest batch,
    # so those are the only batch sizes to try.
    for batch in sorted({1} | {int(hi[0]) + 1 for _, hi in profiles if len(hi)}):
        if batch > batch_size:
            return None
        if not fitting_profiles((batch, *item), profiles):
            return (batch, *item)
    return None


def unserved_passes(profiles: Sequence[ShapeRange], plan: TransformPlan, batch_size: int,
                    stride: int) -> dict[Pass, tuple[int, ...]]:
    """The passes of `plan` with some input no profile takes, each with the first such
    input (b, 3, H, W), in plan order. Inputs are the views of every image in batches of
    1 .. batch_size (`pass_shapes`)."""
    by_scale: dict[int, tuple[int, ...] | None] = {}
    for scale in plan.scales:
        by_scale[scale] = next((shape for h, w in pass_shapes(scale, plan.max_size, stride)
                                if (shape := first_unserved(profiles, (3, h, w), batch_size)) is not None), None)
    return {p: by_scale[p[0]] for p in plan.passes if by_scale[p[0]] is not None}


def pass_label(p: Pass) -> str:
    scale, mirrored = p
    return f"{scale} mirrored" if mirrored else str(scale)


def _span(profiles: Sequence[ShapeRange]) -> str:
    """What the profiles take, as ranges of the batch and of the sides (of their union's
    bounding box: exact for nested profiles such as `distill export trt` builds)."""
    if not profiles:
        return "it has no optimization profile"
    if any(len(lo) != 4 or len(hi) != 4 for lo, hi in profiles):
        return "its optimization profiles take " + ", ".join(f"{list(lo)}..{list(hi)}" for lo, hi in profiles)
    batches = min(lo[0] for lo, _ in profiles), max(hi[0] for _, hi in profiles)
    smallest = min(min(lo[2:]) for lo, _ in profiles)
    longest = max(max(hi[2:]) for _, hi in profiles)
    shorter = max(min(hi[2:]) for _, hi in profiles)
    span = (f"its optimization profiles take batches of {batches[0]} to {batches[1]} and sides of "
            f"{smallest} to {longest} px")
    return span if shorter == longest else f"{span}, the shorter one up to {shorter} px"


def check_fixed_input(model: Path, card: ModelCard, plan: TransformPlan) -> None:
    """Refuse, with one line, a plan some of whose views would not fit the detector's fixed
    input size (module docstring); nothing to check for a detector that takes any size."""
    if card.fixed_input is None:
        return
    height, width = card.fixed_input
    if plan.max_size > min(height, width):
        raise UserError(f"{model.name} takes only {height}x{width} inputs (fixed in its graph), and views of this "
                        f"plan reach {plan.max_size} px: cap the longer side at {min(height, width)} px or less, "
                        f"or use a graph with a dynamic height and width")


def check_profiles(model: Path, card: ModelCard, profiles: Sequence[ShapeRange] | None, plan: TransformPlan,
                   batch_size: int) -> None:
    """Refuse, with one line, a model whose `profiles` (one (min, max) input shape each;
    None: takes any shape) do not take every input the run will feed it: for a detector
    (by its card's task) the views of every pass of `plan` in batches of up to
    `batch_size`, naming the passes it cannot serve; for a keypoint model its crops, in
    batches of up to `batch_size`. model: the model file, for the message."""
    if card.task == "detect":
        check_fixed_input(model, card, plan)
    if profiles is None:
        return
    if card.task == "detect":
        unserved = unserved_passes(profiles, plan, batch_size, card.view_multiple)
        if not unserved:
            return
        passes = ("any pass of the plan" if len(unserved) == len(plan.passes)
                  else "passes " + ", ".join(pass_label(p) for p in unserved))
        example = next(iter(unserved.values()))
    else:
        example = first_unserved(profiles, (3, *card.input_size), batch_size)
        if example is None:
            return
        passes = "the keypoint crops"
    raise UserError(f"{model.name} cannot serve {passes} in batches of up to {batch_size} (no optimization "
                    f"profile takes the input {list(example)}): {_span(profiles)}")
