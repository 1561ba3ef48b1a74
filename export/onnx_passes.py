"""Graph passes applied to an exported ONNX model before it ships.

`fold_batch_norm` removes every BatchNormalization node: into the preceding Conv or
ConvTranspose when that is its only consumer (one fewer kernel, and TensorRT's INT8 path
prefers it), otherwise into a per-channel Mul + Add. The exporter leaves eval-mode BN in
the graph (torch's dynamo exporter does not fold it), so we do it here, independent of
which exporter made the graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def _initializers(model: Any) -> dict[str, Any]:
    return {init.name: init for init in model.graph.initializer}


def fold_batch_norm(model: Any) -> int:
    """Fold all inference BatchNormalization nodes in `model` (onnx.ModelProto, in place).

    Returns the number of BN nodes removed. Raises ValueError for a BN whose statistics
    are not constant initializers (nothing we export produces one).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = _initializers(model)
    consumers = Counter(name for node in graph.node for name in node.input)
    graph_outputs = {out.name for out in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    folded = 0
    new_nodes = []
    removed: set[int] = set()
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        params = node.input[1:5]
        if not all(name in inits for name in params):
            raise ValueError(f"BatchNormalization {node.name!r} has non-constant statistics")
        gamma, beta, mean, var = (numpy_helper.to_array(inits[name]).astype(np.float64) for name in params)
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        conv = producer.get(node.input[0])
        if conv is not None and _fold_into_conv(conv, node, scale, shift, inits, consumers, graph_outputs, model):
            removed.add(id(node))
        else:
            new_nodes.append((node, _affine_nodes(node, scale, shift, model, helper, numpy_helper)))
        folded += 1
    # Rebuild the node list in order, swapping unfoldable BNs for their Mul + Add.
    replacement = {id(bn): nodes for bn, nodes in new_nodes}
    kept = []
    for node in graph.node:
        if id(node) in removed:
            continue
        kept.extend(replacement.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unused_initializers(model)
    return folded


def _fold_into_conv(conv: Any, bn: Any, scale: np.ndarray, shift: np.ndarray, inits: dict,
                    consumers: Counter, graph_outputs: set, model: Any) -> bool:
    from onnx import numpy_helper

    if conv.op_type not in ("Conv", "ConvTranspose") or consumers[bn.input[0]] != 1:
        return False
    if bn.input[0] in graph_outputs or conv.input[1] not in inits or consumers[conv.input[1]] != 1:
        return False
    has_bias = len(conv.input) > 2 and conv.input[2] != ""
    if has_bias and (conv.input[2] not in inits or consumers[conv.input[2]] != 1):
        return False
    weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if conv.op_type == "Conv":  # weight (Cout, Cin/g, k...)
        weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    else:  # ConvTranspose weight (Cin, Cout/g, k...): output channel = group * Cout/g + j
        cin, cout_g = weight.shape[:2]
        grouped = weight.reshape((groups, cin // groups, cout_g) + weight.shape[2:])
        grouped = grouped * scale.reshape((groups, 1, cout_g) + (1,) * (weight.ndim - 2))
        weight = grouped.reshape(weight.shape)
    bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros_like(scale)
    bias = bias * scale + shift
    dtype = numpy_helper.to_array(inits[conv.input[1]]).dtype
    inits[conv.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(dtype), conv.input[1]))
    bias_name = conv.input[2] if has_bias else f"{conv.input[1]}__folded_bias"
    tensor = numpy_helper.from_array(bias.astype(dtype), bias_name)
    if has_bias:
        inits[bias_name].CopyFrom(tensor)
    else:
        model.graph.initializer.append(tensor)
        inits[bias_name] = model.graph.initializer[-1]
        while len(conv.input) < 2:
            conv.input.append("")
        conv.input.append(bias_name)
    conv.output[0] = bn.output[0]  # the conv now writes what the BN wrote
    return True


def _affine_nodes(bn: Any, scale: np.ndarray, shift: np.ndarray, model: Any, helper: Any, numpy_helper: Any) -> list:
    """Mul + Add with (C, 1, 1) constants: BN on NCHW broadcasts over H and W."""
    rank = _rank_of(model, bn.input[0])
    shape = (-1,) + (1,) * (rank - 2)
    base = (bn.name or bn.output[0]).replace("/", "_")
    scale_name, shift_name, mid = f"{base}__scale", f"{base}__shift", f"{base}__scaled"
    model.graph.initializer.extend([
        numpy_helper.from_array(scale.reshape(shape).astype(np.float32), scale_name),
        numpy_helper.from_array(shift.reshape(shape).astype(np.float32), shift_name),
    ])
    return [helper.make_node("Mul", [bn.input[0], scale_name], [mid], name=f"{base}__mul"),
            helper.make_node("Add", [mid, shift_name], [bn.output[0]], name=f"{base}__add")]


def _rank_of(model: Any, name: str) -> int:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return 4  # our models are NCHW everywhere


def _drop_unused_initializers(model: Any) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {out.name for out in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def rename_dims(model: Any, names: dict[int, str], input_name: str) -> None:
    """Give the input's symbolic dims readable names ("batch", "height", "width").

    names: axis -> new name for `input_name`; the same symbol is renamed wherever it
    appears (outputs and value_info share the symbols the exporter generated).
    """
    graph = model.graph
    target = next(t for t in graph.input if t.name == input_name)
    mapping = {}
    for axis, new in names.items():
        dim = target.type.tensor_type.shape.dim[axis]
        if dim.dim_param:
            mapping[dim.dim_param] = new
    for info in (*graph.input, *graph.output, *graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def set_metadata(model: Any, key: str, value: str) -> None:
    """Set (replace) one `metadata_props` entry."""
    for prop in list(model.metadata_props):
        if prop.key == key:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value
