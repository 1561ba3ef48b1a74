"""The trade-off as a table on stdout, a JSON file and a PNG of the front."""

from __future__ import annotations

from pathlib import Path

from engine.atomic import write_json_atomically
from engine.label.views import Pass
from engine.plan.scoring import Score
from engine.plan.search import Point


def pass_name(item: Pass) -> str:
    scale, mirrored = item
    return f"{scale}{'m' if mirrored else ''}"


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(points: list[Point], passes: list[Pass], identity: Score, identity_cost: float,
          chosen: Point) -> list[str]:
    """The greedy path (one line per step) and the identity, front points marked `*`,
    the chosen plan marked `<`. Pass names: shorter side, `m` when mirrored."""
    lines = [f"{'step':>4} {'added':>6} {'cost':>6} {'box AP':>7} {'kp AP':>7}  front",
             f"{'-':>4} {'ident':>6} {identity_cost:>6.3f} {identity.box_AP:>7.3f} {_ap(identity.keypoint_AP):>7}"]
    path = [p for p in points if p.on_path]
    previous: tuple[int, ...] = ()
    for point in path:
        (added,) = set(point.subset) - set(previous)
        previous = point.subset
        marks = ("*" if point.on_front else " ") + (" <" if point is chosen else "")
        lines.append(f"{point.step:>4} {pass_name(passes[added]):>6} {point.cost:>6.3f} {point.box_AP:>7.3f} "
                     f"{_ap(point.keypoint_AP):>7}  {marks}")
    if not chosen.on_path:
        lines.append(f"chosen (off the greedy path): {' '.join(pass_name(passes[p]) for p in chosen.subset)} "
                     f"cost {chosen.cost:.3f} box AP {chosen.box_AP:.3f} kp AP {_ap(chosen.keypoint_AP)}")
    return lines


def summary_line(chosen: Point, full: Point, identity: Score, names: list[str], budget: float, objective: str) -> str:
    """What the budget buys: the chosen plan's AP and gain over the identity, against the
    full plan's (the share of the gain only where the full plan gains at least 0.001)."""
    key = "box_AP" if objective == "box" else "keypoint_AP"
    base = getattr(identity, key) or 0.0
    gain, kept = getattr(full, key) - base, getattr(chosen, key) - base
    share = f", {kept / gain:.0%} of the full plan's gain" if gain >= 0.001 else ""
    return (f"chosen for budget {budget:g}: {' '.join(names)} (cost {chosen.cost:.3f}): {objective} AP "
            f"{getattr(chosen, key):.3f}, {kept:+.3f} over the identity ({base:.3f}); the full plan "
            f"{getattr(full, key):.3f}, {gain:+.3f}{share}")


def write_json(path: Path, points: list[Point], passes: list[Pass], identity: Score, identity_cost: float,
               chosen: Point, settings: dict) -> None:
    def row(point: Point) -> dict:
        return {"passes": [pass_name(passes[p]) for p in point.subset], "cost": round(point.cost, 5),
                "box_AP": point.box_AP, "keypoint_AP": point.keypoint_AP, "step": point.step,
                "on_path": point.on_path, "on_front": point.on_front}
    write_json_atomically(path, {
        "settings": settings,
        "identity": {"cost": round(identity_cost, 5), "box_AP": identity.box_AP,
                     "keypoint_AP": identity.keypoint_AP},
        "chosen": row(chosen),
        "points": [row(p) for p in points],
    }, indent=1)


def plot_front(path: Path, points: list[Point], identity: Score, identity_cost: float, chosen: Point,
               objective: str, budget: float) -> bool:
    """The PNG chart; False (and nothing written) where matplotlib is not installed
    (the optional `plots` extra: a labeling box needs none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    label = "box AP" if objective == "box" else "keypoint AP"
    identity_value = identity.box_AP if objective == "box" else (identity.keypoint_AP or 0.0)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter([p.cost for p in points], [p.value(objective) for p in points], s=10, color="0.75",
               label="subsets tried")
    path_points = sorted((p for p in points if p.on_path), key=lambda p: p.cost)
    ax.plot([p.cost for p in path_points], [p.value(objective) for p in path_points], color="tab:blue",
            marker="o", markersize=3, linewidth=1, label="greedy path")
    front = sorted((p for p in points if p.on_front), key=lambda p: p.cost)
    ax.step([p.cost for p in front], [p.value(objective) for p in front], where="post", color="tab:red",
            linewidth=1.5, label="Pareto front")
    ax.axhline(identity_value, color="0.4", linestyle=":", label=f"identity (cost {identity_cost:.2f})")
    ax.axvline(budget, color="tab:green", linestyle="--", linewidth=1, label=f"budget {budget:g}")
    ax.scatter([chosen.cost], [chosen.value(objective)], marker="*", s=160, color="tab:green", zorder=5,
               label="chosen plan")
    ax.set_xlabel("relative detector cost (padded pixels, full plan = 1)")
    ax.set_ylabel(f"{label} of the ensembled labels")
    ax.set_title("Which test-time passes pay: ensembles of cached passes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
