"""The real COCO-trained YOLO11n-pose of ../shared/data, imported and run through
`distill label` (one pass at its native size, plain NMS), scores the same box and
keypoint AP on coco-mini's 158 val2017 photos as the raw export decoded directly with
ONNX Runtime (benchmarks/real_teacher.py, `direct`). About 1.5 minutes on 2 cores."""

from __future__ import annotations

import pytest

from benchmarks import real_teacher
from tests.conftest import shared_data_dir


@pytest.fixture(scope="module")
def model():
    path = shared_data_dir() / "models" / "yolo11n-pose" / "yolo11n-pose.onnx"
    if not path.is_file():
        pytest.skip(f"the real teacher is not at {path} (../shared/data is absent)")
    return path


def test_imported_teacher_scores_as_the_raw_export(model, coco_mini, tmp_path):
    gt = real_teacher.split_ground_truth(coco_mini)
    assert len(gt["images"]) == 158
    teacher = real_teacher.import_teacher(tmp_path, model)
    images = real_teacher.prepare(tmp_path, gt, coco_mini)
    run, _ = real_teacher.label_run(teacher, images, tmp_path, "native", real_teacher.RUNS["native"])
    engine = real_teacher.score(gt, real_teacher.labeled_people(run))
    paths = [coco_mini / "images" / image["file_name"] for image in gt["images"]]
    direct = real_teacher.score(gt, real_teacher.direct_predictions(model, paths))
    assert engine["box_AP"] > 0.3 and engine["keypoint_AP"] > 0.4  # a teacher that sees people
    assert engine["box_AP"] == pytest.approx(direct["box_AP"], abs=0.01)
    assert engine["keypoint_AP"] == pytest.approx(direct["keypoint_AP"], abs=0.01)
