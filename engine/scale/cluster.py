"""Connect to a Ray cluster (or start a local one) and size the labeling actor pool.

Ray is imported here, inside the functions, so that the engine imports without it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import ModuleType

from engine.errors import UserError


def import_ray() -> ModuleType:
    """The `ray` module with Ray Data, or a one-line UserError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Core alone has no Data)
    except ImportError:
        raise UserError("--ray needs Ray Data: pip install 'distill[scale]' (or make setup)") from None
    return ray


@dataclass(frozen=True)
class Cluster:
    """The cluster joined: its GCS address and total resources ({"CPU": n, "GPU": m, ...})."""

    address: str
    resources: dict[str, float]


def connect(address: str | None) -> Cluster:
    """Join the cluster at `address` (None: RAY_ADDRESS, else the latest `ray start` on
    this machine, else a new local instance; "ray://host:10001" for Ray Client), unless
    this process is already connected."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=True, configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise UserError(f"cannot connect to Ray at {address or 'the default address'}: "
                            f"{str(error).splitlines()[0]}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # distill label draws its own bar, per image
    # Ray Data logs every job's start and end at INFO, and that its bars are off as a
    # warning on every run: noise beside our own bar and summary.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return Cluster(str(ray.get_runtime_context().gcs_address),
                   {name: float(value) for name, value in ray.cluster_resources().items()})


@dataclass(frozen=True)
class ActorPool:
    """How many labeling actors, and what each reserves (Ray logical resources)."""

    actors: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        """CPU threads an actor uses: decode and merge workers, ONNX Runtime on the CPU."""
        return max(1, math.floor(self.cpus))

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.actors} actor(s) of {self.cpus:g} CPU{gpus} each"


def size_pool(resources: dict[str, float], actors: int | None, cpus: float | None, gpus: float | None) -> ActorPool:
    """The actor pool for a cluster with `resources`; None picks the default.

    With GPUs: one actor per GPU (`gpus` 1), each with an equal share of the CPUs less
    one. Without: 1-CPU actors on every CPU but one. One CPU is always left to Ray Data
    itself and the driver: on a 2-CPU cluster an actor pool that takes every CPU can
    starve Ray Data's own tasks (DESIGN.md, Growing past one machine). Refuses a pool the
    cluster cannot hold at all, which Ray would otherwise wait on forever.
    """
    total_cpus = resources.get("CPU", 0.0)
    total_gpus = resources.get("GPU", 0.0)
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    if gpus < 0 or (cpus is not None and cpus <= 0):
        raise UserError("--actor-cpus must be > 0 and --actor-gpus >= 0")
    spare_cpus = max(1.0, total_cpus - 1)
    if actors is None:
        actors = int(total_gpus // gpus) if gpus else int(spare_cpus // (cpus or 1.0))
        actors = max(1, actors)
    if cpus is None:
        cpus = max(1.0, math.floor(spare_cpus / actors)) if gpus else 1.0
    if actors < 1:
        raise UserError(f"--actors must be >= 1, got {actors}")
    if actors * gpus > total_gpus:
        raise UserError(f"{actors} actor(s) of {gpus:g} GPU need {actors * gpus:g} GPUs; "
                        f"the cluster has {total_gpus:g}")
    if actors * cpus > total_cpus:
        raise UserError(f"{actors} actor(s) of {cpus:g} CPU need {actors * cpus:g} CPUs; "
                        f"the cluster has {total_cpus:g}")
    return ActorPool(actors, cpus, gpus)
