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


# ---- what an imported graph needs (distill import): padding, fixed sizes, keypoints -----
def pose_card(**changes) -> ModelCard:
    """An imported one-stage pose detector's card: keypoints per candidate, Ultralytics'
    letterbox padding."""
    fields = dict(outputs=["boxes", "scores", "labels", "keypoints"], keypoint_names=[f"k{i}" for i in range(17)],
                  flip_pairs=[[1, 2]], pad_multiple=32, pad_value=114, pad_position="center")
    return detector_card(**{**fields, **changes})


def test_cards_of_our_exports_read_and_hash_as_before():
    # The fields of imported graphs are written only when they differ from the defaults,
    # so a card made before they existed has the same JSON, and so the same sha256 that
    # every run's manifest records.
    text = detector_card().to_json()
    assert not {"pad_multiple", "pad_value", "pad_position", "fixed_input", "fixed_batch", "post_nms",
                "clip_after_merge"} & set(
        json.loads(text))
    assert ModelCard.from_json(text, "m").sha256() == detector_card().sha256()
    card = pose_card(fixed_input=[640, 640], fixed_batch=1, post_nms=True, clip_after_merge=True)
    assert ModelCard.from_json(card.to_json(), "m") == card and card.sha256() != detector_card().sha256()
    assert (card.view_multiple, detector_card().view_multiple, card.has_keypoints) == (32, 32, True)
    assert detector_card(pad_multiple=1).view_multiple == 1


@pytest.mark.parametrize("change, message", [
    ({"pad_multiple": 0}, "pad_multiple"),
    ({"pad_value": 256}, "pad_value"),
    ({"pad_position": "bottom"}, "pad_position"),
    ({"fixed_input": [640]}, "fixed_input"),
    ({"fixed_batch": 4}, "fixed_batch 4 must be 1"),
    ({"post_nms": "yes"}, "post_nms"),
    ({"keypoint_names": []}, "keypoint_names is empty"),
    ({"flip_pairs": [[0, 17]]}, "flip pair"),
])
def test_inconsistent_import_fields(change, message):
    data = json.loads(pose_card(**change).to_json())
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data, "m.onnx")


def pose_graph(**changes) -> GraphSignature:
    return detector_graph(**{"keypoints": TensorSpec("keypoints", "float32", (None, 100, 17, 3)), **changes})


def test_import_fields_are_checked_against_the_graph():
    validate_card(pose_card(), pose_graph(), "p.onnx")
    fixed = TensorSpec("images", "uint8", (1, 3, 640, 640))
    validate_card(pose_card(fixed_input=[640, 640], fixed_batch=1), pose_graph(images=fixed), "p.onnx")
    cases = [
        (pose_card(), pose_graph(keypoints=TensorSpec("keypoints", "float32", (None, 100, 14, 3))),
         "'keypoints' has shape \\[\\?, 100, 14, 3\\], card implies \\[\\?, 100, 17, 3\\]"),
        (pose_card(), detector_graph(), "graph outputs are"),
        (pose_card(), pose_graph(images=fixed), "card says any batch size"),
        (pose_card(fixed_batch=1), pose_graph(images=fixed), "card says any height and width"),
        (pose_card(fixed_input=[640, 480], fixed_batch=1), pose_graph(images=fixed), "card says only 640x480"),
        (pose_card(fixed_input=[640, 640]), pose_graph(), "card says only 640x640"),
    ]
    for card, graph, message in cases:
        with pytest.raises(ModelCardError, match="p.onnx: model card disagrees with the graph: .*" + message):
            validate_card(card, graph, "p.onnx")
