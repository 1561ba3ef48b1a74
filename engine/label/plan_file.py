"""Transform plan files: the passes `distill plan-transforms` chose, for `distill label --plan`.

    {"format": "distill.transform_plan", "version": 1,
     "passes": [[400, false], [800, true]], "max_size": 2000,
     "stages": {"first": [[400, false]], "rule": "disagree",    # a staged plan only
                "params": {"score": 0.3, "iou": 0.6}},
     "chosen": {...}}          # how it was chosen (budget, cost, AP); informational

A plan file carries `max_size` because the passes were measured with it; the labeling run
records the plan it used in its manifest like any other. A staged plan
(engine.label.escalation) lists every pass in "passes" (what a TensorRT engine must
take) and its first stage and rule in "stages"; the escalation passes are the others.
`distill plan-transforms` writes its "chosen" as the fixed `--budget` plan's figures, with
the staged plan's (cost, escalated, AP, first stage, target) under "chosen"."stages".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.atomic import write_json_atomically
from engine.json_file import read_json_object
from engine.label.escalation import Escalation
from engine.label.views import TransformPlan

FORMAT = "distill.transform_plan"
VERSION = 1
PLAN_FILE_NAME = "plan.json"  # inside the folder distill plan-transforms writes


def write_plan_file(path: Path, plan: TransformPlan, chosen: dict[str, Any],
                    escalation: Escalation | None = None) -> None:
    """`plan` (always written as an explicit pass list), its stages when `escalation` is
    given, and how it was `chosen`."""
    document = {"format": FORMAT, "version": VERSION,
                "passes": [[scale, mirrored] for scale, mirrored in plan.passes],
                "max_size": plan.max_size}
    if escalation is not None:
        document["stages"] = escalation.to_dict()
    document["chosen"] = chosen
    write_json_atomically(path, document, indent=1)


def read_plan_file(path: Path) -> TransformPlan:
    """The plan in `path` (a plan.json, or the folder `distill plan-transforms` wrote it
    into): every pass it may run; ValueError with one line that says what is wrong with
    the file."""
    return read_staged_plan(path)[0]


def read_staged_plan(path: Path) -> tuple[TransformPlan, Escalation | None]:
    """(every pass of the plan in `path`, its stages or None for a fixed plan);
    ValueError with one line that says what is wrong with the file."""
    path = Path(path)
    if path.is_dir():
        path = path / PLAN_FILE_NAME
    try:
        document = read_json_object(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a transform plan (expected \"format\": \"{FORMAT}\", "
                         f"written by distill plan-transforms)")
    if document.get("version") != VERSION:
        raise ValueError(f"{path}: plan version {document.get('version')!r}, this distill reads {VERSION}")
    try:
        plan = TransformPlan.from_dict({"passes": document["passes"], "max_size": document["max_size"]})
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: malformed passes ({error})") from None
    if document.get("stages") is None:
        return plan, None
    try:
        escalation = Escalation.from_dict(document["stages"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: malformed stages ({error})") from None
    if not set(escalation.first) < set(plan.passes):
        raise ValueError(f"{path}: the first stage's passes must be some, not all, of the plan's passes")
    return plan, escalation
