"""The lifecycle every backend follows: construct (cheap, no accelerator), `activate`
(load the model, allocate device memory, validate the model card), `infer` any number of
times, `deactivate` (free everything). Usable as a context manager.

Public methods check state and call the `_activate_impl` / `_infer_impl` /
`_deactivate_impl` hooks, so every backend refuses misuse the same way.

What the labeling stages use of a model is narrower than a backend: its card and `infer`
(`ActiveModel`). An active backend is one; so is a wrapper that changes how `infer` runs
but owns no model (engine.label.labeler.TakingTurns), and a stand-in that replays recorded
outputs (benchmarks/throughput.py).
"""

from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from engine.modelcard import GraphSignature, ModelCard

ShapeRange = tuple[tuple[int, ...], tuple[int, ...]]
"""One optimization profile of an input: its (min shape, max shape), both inclusive."""


@runtime_checkable
class ActiveModel(Protocol):
    """A model ready to run: its card and `infer(feed) -> outputs` (see `Backend.infer`).
    The caller of `infer` does not own the model's lifecycle."""

    card: ModelCard

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class BackendStateError(RuntimeError):
    """A backend used out of order (infer before activate, activate twice): a bug."""


class Backend:
    """Base class. Subclasses set `self.card` and `self.signature` in `_activate_impl`."""

    name = "backend"

    def __init__(self) -> None:
        self._active = False
        self.card: ModelCard | None = None
        self.signature: GraphSignature | None = None

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def runs_on_cpu(self) -> bool:
        """Whether the active backend computes on the CPU, where two models compete for the
        same cores (engine.label.run.inference_policy). Accelerator backends keep False."""
        return False

    @property
    def input_profiles(self) -> list[ShapeRange] | None:
        """The input shapes the model was built for, one (min, max) per optimization profile
        (engine.label.profiles checks a run against them); None: any shape."""
        return None

    def activate(self) -> "Backend":
        if self._active:
            raise BackendStateError(f"{self.name}: activate() called on an active backend")
        self._activate_impl()
        self._active = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on host arrays; returns host arrays keyed by output name.

        `feed` must hold exactly the graph's inputs (for our models: `images` or `crops`,
        uint8 NCHW RGB).
        """
        if not self._active:
            raise BackendStateError(f"{self.name}: infer() called before activate()")
        assert self.signature is not None
        expected = {spec.name for spec in self.signature.inputs}
        if set(feed) != expected:
            raise ValueError(f"{self.name}: feed has {sorted(feed)}, graph expects {sorted(expected)}")
        return self._infer_impl(feed)

    def deactivate(self) -> None:
        if not self._active:
            raise BackendStateError(f"{self.name}: deactivate() called on an inactive backend")
        try:
            self._deactivate_impl()
        finally:
            self._active = False

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        raise NotImplementedError
