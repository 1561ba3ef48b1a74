"""A small builder of ONNX nodes for the graphs put before and after an imported network.

The wrapper graphs run at the imported network's own opset (onnx.compose merges only
models of one opset), so they use operators whose signature is the same from opset 11
(TopK's `largest`/`sorted`, GatherElements, Range) to the newest: Reshape instead of
Squeeze/Unsqueeze, Slice with its bounds as inputs, TopK instead of ReduceMax, Where
instead of Min/Max on integers (integer Min/Max came in opset 12).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_OPSET = 11


class Nodes:
    """Nodes and constants of one graph under construction, every name starting with
    `prefix` so that they cannot collide with the imported network's names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: Any, dtype: Any, hint: str = "const") -> str:
        """A constant tensor (an initializer) of `value` as `dtype`; returns its name."""
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, outputs: int = 1, **attrs: Any):
        """Append one node; returns its output name (or the list of `outputs` names)."""
        from onnx import helper

        names = [out] if out is not None else [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"node_{op_type}"), **attrs))
        return names[0] if outputs == 1 else names

    # ---- composite steps used by several decoders -------------------------------------
    def columns(self, x: str, start: int, stop: int, axis: int = -1) -> str:
        """x[..., start:stop] along `axis`."""
        return self.op("Slice", x, self.const([start], np.int64), self.const([stop], np.int64),
                       self.const([axis], np.int64))

    def reshape(self, x: str, shape: list[int]) -> str:
        """Reshape with ONNX's conventions (0 copies the input's dim, -1 is inferred)."""
        return self.op("Reshape", x, self.const(shape, np.int64))

    def dim(self, x: str, axis: int) -> str:
        """The size of `x` along `axis`, a 0-d int64 tensor."""
        return self.op("Gather", self.op("Shape", x), self.const(axis, np.int64))

    def to_float(self, x: str) -> str:
        from onnx import TensorProto

        return self.op("Cast", x, to=TensorProto.FLOAT)

    def best_class(self, scores: str) -> tuple[str, str]:
        """`(B, N, C)` per-class scores -> the best score `(B, N)` and its class `(B, N)`
        int64, by TopK with k = 1 (ReduceMax's signature changed in opset 18)."""
        value, index = self.op("TopK", scores, self.const([1], np.int64), axis=-1, largest=1, sorted=1, outputs=2)
        return self.reshape(value, [0, -1]), self.reshape(index, [0, -1])
