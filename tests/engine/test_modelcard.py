"""Model cards: parsing, self-consistency, and agreement with a graph's inputs/outputs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.errors import UserError
from engine.modelcard import (CARD_KEY, GraphSignature, ModelCard, ModelCardError, TensorSpec,
                              card_from_metadata, validate_card)


def detector_card(**changes) -> ModelCard:
    card = ModelCard(task="detect", categories=[{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
                     input_name="images", outputs=["boxes", "scores", "labels"], strides=[8, 16, 32],
                     topk=100)
    return dataclasses.replace(card, **changes)


def keypoint_card(**changes) -> ModelCard:
    card = ModelCard(task="keypoints", categories=[{"id": 1, "name": "person"}], input_name="crops",
                     outputs=["heatmaps"], strides=[4], input_size=[64, 48],
                     keypoint_names=[f"k{i}" for i in range(17)], flip_pairs=[[1, 2]], skeleton=[[16, 14]])
    return dataclasses.replace(card, **changes)


def detector_graph(**changes) -> GraphSignature:
    specs = {"images": TensorSpec("images", "uint8", (None, 3, None, None)),
             "boxes": TensorSpec("boxes", "float32", (None, 100, 4)),
             "scores": TensorSpec("scores", "float32", (None, 100)),
             "labels": TensorSpec("labels", "int32", (None, 100))}
    specs.update(changes)
    return GraphSignature((specs.pop("images"),), tuple(specs.values()))


def keypoint_graph(inp=None, out=None) -> GraphSignature:
    return GraphSignature((inp or TensorSpec("crops", "uint8", (None, 3, 64, 48)),),
                          (out or TensorSpec("heatmaps", "float32", (None, 17, 16, 12)),))


def test_card_round_trips_through_json_and_metadata():
    for card in (detector_card(), keypoint_card()):
        assert ModelCard.from_json(card.to_json(), "m.onnx") == card
        assert card_from_metadata({CARD_KEY: card.to_json(), "other": "x"}, "m.onnx") == card
    assert issubclass(ModelCardError, UserError)


def test_missing_card_is_refused_by_name():
    with pytest.raises(ModelCardError, match=r"m\.onnx: model has no model card .*distill\.model_card"):
        card_from_metadata({"producer": "someone"}, "m.onnx")


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"format": "v0"}), "format 'v0'"),
])
def test_malformed_cards(text, message):
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_json(text, "m.onnx")


@pytest.mark.parametrize("change, message", [
    ({"task": "segment"}, "task 'segment'"),
    ({"categories": []}, "categories"),
    ({"strides": [0]}, "strides"),
    ({"normalization": "imagenet"}, "normalization"),
    ({"topk": 0}, "topk"),
    ({"outputs": ["boxes", "scores"]}, "detector must"),
])
def test_inconsistent_detector_cards(change, message):
    data = json.loads(detector_card(**change).to_json())
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data, "m.onnx")


@pytest.mark.parametrize("change, message", [
    ({"input_size": [64]}, "input_size"),
    ({"keypoint_names": []}, "keypoint_names"),
    ({"flip_pairs": [[1, 17]]}, "flip pair"),
    ({"skeleton": [[0, 1]]}, "skeleton edge"),
])
def test_inconsistent_keypoint_cards(change, message):
    data = json.loads(keypoint_card(**change).to_json())
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data, "m.onnx")


def test_unknown_and_missing_fields():
    data = json.loads(detector_card().to_json())
    with pytest.raises(ModelCardError, match="unknown fields \\['colour'\\]"):
        ModelCard.from_dict({**data, "colour": "red"}, "m")
    del data["strides"]
    with pytest.raises(ModelCardError, match="lacks fields \\['strides'\\]"):
        ModelCard.from_dict(data, "m")


def test_matching_graphs_pass():
    validate_card(detector_card(), detector_graph(), "d.onnx")
    validate_card(keypoint_card(), keypoint_graph(), "k.onnx")


@pytest.mark.parametrize("graph, message", [
    (detector_graph(images=TensorSpec("input", "uint8", (None, 3, None, None))), "graph input is 'input'"),
    (detector_graph(images=TensorSpec("images", "float32", (None, 3, None, None))), "is float32, card says uint8"),
    (detector_graph(images=TensorSpec("images", "uint8", (None, None, 3))), "NCHW"),
    (detector_graph(labels=TensorSpec("classes", "int32", (None, 100))), "graph outputs are"),
    (detector_graph(labels=TensorSpec("labels", "int64", (None, 100))), "'labels' is int64"),
    (detector_graph(boxes=TensorSpec("boxes", "float32", (None, 50, 4))), "'boxes' has shape \\[\\?, 50, 4\\]"),
])
def test_detector_graph_mismatches_are_named(graph, message):
    with pytest.raises(ModelCardError, match="d.onnx: model card disagrees with the graph: .*" + message):
        validate_card(detector_card(), graph, "d.onnx")


def test_keypoint_graph_mismatches_are_named():
    with pytest.raises(ModelCardError, match="input_size is \\[64, 48\\]"):
        validate_card(keypoint_card(), keypoint_graph(inp=TensorSpec("crops", "uint8", (None, 3, 256, 192))), "k")
    with pytest.raises(ModelCardError, match="17 keypoints"):
        validate_card(keypoint_card(), keypoint_graph(out=TensorSpec("heatmaps", "float32", (None, 14, 16, 12))), "k")
    with pytest.raises(ModelCardError, match="only 'crops'"):
        extra = GraphSignature((TensorSpec("crops", "uint8", (1, 3, 64, 48)), TensorSpec("x", "uint8", (1,))),
                               keypoint_graph().outputs)
        validate_card(keypoint_card(), extra, "k")
