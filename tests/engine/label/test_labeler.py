"""The labeling contract: `Labeler`'s five stage methods are all that turns images into
records. The pipeline overlaps them in threads (and a scale-out actor runs that
pipeline); chaining them by hand, one chunk after the other, through models wrapped to
take turns, must give the very records the pipeline wrote."""

from __future__ import annotations

import json
import threading

from engine.label.batches import chunk_images
from engine.label.decode import decode_file
from engine.label.labeler import Labeler, LabelSettings, TakingTurns
from engine.label.merge import MergeSettings
from engine.label.request import Inputs, LabelRequest, Runtime
from engine.label.run import inference_policy, label, open_teachers
from engine.label.shards import record_line
from engine.label.views import TransformPlan
from tests.engine.conftest import read_run

FLOOR = 0.001  # the tiny detector scores low; a low floor keeps records non-trivial


def test_the_stage_methods_chained_by_hand_give_the_pipelines_records(exported, dump, tmp_path):
    settings = LabelSettings(TransformPlan.grid((96, 128), max_size=256), MergeSettings(score_floor=FLOOR))
    request = LabelRequest(detector=exported["detect"][0], keypoints=exported["keypoints"][0], out=tmp_path / "run",
                           inputs=Inputs(images=dump), labeling=settings, runtime=Runtime(workers=2, progress=False))
    label(request)
    records, failures = read_run(request.out)
    assert not failures and len(records) == 10

    sources = list(request.inputs.open()[1])
    chunk = chunk_images(request.runtime.batch_size, settings.plan)  # as the pipeline groups images
    assert 1 < chunk < len(sources)
    expected = []
    with open_teachers(request, *inference_policy(request)) as teachers:
        lock = threading.Lock()
        labeler = Labeler(TakingTurns(teachers.detector, lock), TakingTurns(teachers.keypoints, lock),
                          teachers.person, settings, request.runtime.batch_size)
        for start in range(0, len(sources), chunk):
            part = sources[start:start + chunk]
            images = [decode_file(source.path) for source in part]
            candidates = labeler.detect([labeler.views(image) for image in images])
            detections = [labeler.merge(c) for c in candidates]
            keypoints = labeler.estimate_keypoints(images, detections)
            expected += [labeler.record(source.name, image, d, k)
                         for source, image, d, k in zip(part, images, detections, keypoints)]
    assert any("keypoints" in d for r in records for d in r["detections"])  # every stage had work
    assert records == [json.loads(record_line(r)) for r in expected]

