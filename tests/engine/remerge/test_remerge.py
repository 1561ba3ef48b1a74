"""`distill label --keep-candidates` and `distill remerge` on the tiny teachers: the kept
candidates change no record, and a remerge equals a fresh labeling run with its settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.label.labeler import LabelSettings
from engine.label.manifest import RunManifest
from engine.label.merge import MergeSettings
from engine.label.run import label
from engine.label.views import TransformPlan
from engine.remerge.candidates import ShardCandidates, candidates_path
from engine.remerge.remerge import RemergeRequest, remerge
from tests.engine.conftest import FLOOR, assert_same_records, read_run, request


def shard_bytes(out: Path) -> list[bytes]:
    return [(out / "shards" / e.file).read_bytes() for e in RunManifest.load(out).shards]


@pytest.fixture(scope="module")
def kept(exported, dump, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kept") / "run"
    label(request(exported, dump, out, keep_candidates=True))
    return out


@pytest.fixture(scope="module")
def plain(exported, dump, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "run"
    label(request(exported, dump, out))
    return out


def fresh(exported, dump, out: Path, labeling: LabelSettings) -> Path:
    label(dataclasses.replace(request(exported, dump, out), labeling=labeling))
    return out


def test_kept_candidates_change_no_record_and_sit_beside_each_shard(kept, plain):
    assert shard_bytes(kept) == shard_bytes(plain)
    manifest = RunManifest.load(kept)
    assert manifest.settings.keep_candidates and not RunManifest.load(plain).settings.keep_candidates
    assert "keep_candidates" not in (plain / "manifest.json").read_text()
    records, _ = read_run(kept)
    names = []
    passes = len(manifest.settings.labeling.plan.passes)
    for entry in manifest.shards:
        shard = ShardCandidates(candidates_path(kept, entry.file))
        assert shard.counts.shape == (len(shard.names), passes) and (shard.counts >= 0).all()
        names += shard.names
        # the people the records carry keypoints for are the kept person boxes
        for i, name in enumerate(shard.names):
            record = next(r for r in records if r["file_name"] == name)
            assert len(shard.persons(i).boxes) == sum("keypoints" in d for d in record["detections"])
    assert names == [r["file_name"] for r in records]


def test_remerge_with_the_same_settings_rewrites_the_run_byte_for_byte(kept, tmp_path):
    summary = remerge(RemergeRequest(kept, tmp_path / "same"))  # no keypoint model given: none needed
    assert summary.changed_persons == 0 and summary.persons > 0
    assert shard_bytes(tmp_path / "same") == shard_bytes(kept)
    assert (tmp_path / "same" / "failures.jsonl").read_text() == (kept / "failures.jsonl").read_text()


def test_remerge_equals_a_fresh_label_with_a_subset_and_other_merge_settings(exported, dump, kept, tmp_path):
    plan = TransformPlan(((128, False), (128, True)), 256)
    merge = MergeSettings(nms_threshold=0.6, vote_threshold=0.5, scoring="avg", score_floor=0.01)
    summary = remerge(RemergeRequest(kept, tmp_path / "re", plan, merge, keypoints=exported["keypoints"][0]))
    assert summary.changed_persons > 0
    expected = fresh(exported, dump, tmp_path / "fresh", LabelSettings(plan, merge))
    assert_same_records(read_run(tmp_path / "re")[0], read_run(expected)[0])
    assert RunManifest.load(tmp_path / "re").settings.labeling == RunManifest.load(expected).settings.labeling


def test_an_interrupted_remerge_resumes_without_rewriting_finished_shards(exported, kept, tmp_path, monkeypatch):
    from engine.label.shards import RunExists, RunFolder

    plan = TransformPlan(((128, False), (128, True)), 256)
    keypoints = exported["keypoints"][0]
    remerge(RemergeRequest(kept, tmp_path / "whole", plan, keypoints=keypoints))
    write_shard = RunFolder.write_shard
    written: list[int] = []

    def stopped_after_one_shard(self, index, *args):
        if written:
            raise KeyboardInterrupt
        written.append(index)
        return write_shard(self, index, *args)

    monkeypatch.setattr(RunFolder, "write_shard", stopped_after_one_shard)
    out = tmp_path / "re"
    with pytest.raises(KeyboardInterrupt):
        remerge(RemergeRequest(kept, out, plan, keypoints=keypoints))
    assert not RunManifest.load(out).complete
    with pytest.raises(RunExists):
        remerge(RemergeRequest(kept, out, plan, keypoints=keypoints))
    with pytest.raises(UserError, match="settings differ"):
        remerge(RemergeRequest(kept, out, TransformPlan(((128, False),), 256), keypoints=keypoints, resume=True))
    resumed: list[int] = []
    monkeypatch.setattr(RunFolder, "write_shard",
                        lambda self, index, *args: (resumed.append(index), write_shard(self, index, *args))[1])
    remerge(RemergeRequest(kept, out, plan, keypoints=keypoints, resume=True))
    everything = [e.index for e in RunManifest.load(kept).shards]
    assert len(everything) > 1 and sorted(written + resumed) == everything  # none twice
    assert RunManifest.load(out).complete
    assert shard_bytes(out) == shard_bytes(tmp_path / "whole")
    assert (out / "failures.jsonl").read_text() == (tmp_path / "whole" / "failures.jsonl").read_text()


def test_remerge_refuses_what_the_candidates_cannot_give(exported, kept, plain, tmp_path):
    with pytest.raises(UserError, match="kept no candidates"):
        remerge(RemergeRequest(plain, tmp_path / "a"))
    with pytest.raises(UserError, match=r"not among the run's"):
        remerge(RemergeRequest(kept, tmp_path / "b", TransformPlan(((160, False),), 256)))
    with pytest.raises(UserError, match="below the run's"):
        remerge(RemergeRequest(kept, tmp_path / "c", merge=MergeSettings(score_floor=FLOOR / 2)))
    with pytest.raises(UserError, match="keypoint model is needed"):
        remerge(RemergeRequest(kept, tmp_path / "d", TransformPlan(((128, False), (128, True)), 256),
                               MergeSettings(score_floor=FLOOR, vote_threshold=0.5, scoring="avg")))


def test_remerge_command_writes_a_run_and_refuses_in_one_line(exported, kept, plain, tmp_path, capsys):
    from engine.cli import main
    from engine.label.plan_file import write_plan_file
    from tests.conftest import assert_cli_error

    (tmp_path / "plan").mkdir()
    write_plan_file(tmp_path / "plan" / "plan.json", TransformPlan(((96, False), (160, True)), 256), {})
    assert_cli_error(capsys, main(["remerge", "--predictions", str(kept), "--out", str(tmp_path / "a"),
                                   "--plan", str(tmp_path / "plan")]), "remerge", "[(160, True)]", "not among")
    assert_cli_error(capsys, main(["remerge", "--predictions", str(plain), "--out", str(tmp_path / "b")]),
                     "remerge", "kept no candidates", "--keep-candidates")
    assert main(["remerge", "--predictions", str(kept), "--out", str(tmp_path / "c"), "--max-detections", "3"]) == 0
    out = capsys.readouterr().out
    assert "remerged 10 images" in out and "keypoint model on 0 of" in out
    records, _ = read_run(tmp_path / "c")
    assert max(len(r["detections"]) for r in records) == 3
    assert RunManifest.load(tmp_path / "c").settings.labeling.merge.max_detections == 3
    assert_cli_error(capsys, main(["remerge", "--predictions", str(kept), "--out", str(tmp_path / "c")]),
                     "remerge", "already holds a labeling run", "another --out", "--resume")


def test_remerge_says_where_the_keypoints_came_from():
    from engine.label.manifest import RunSummary
    from engine.remerge.remerge import RemergeSummary

    assert RemergeSummary(RunSummary(), 2, 5, "top-down").lines()[-1].startswith("keypoint model on 2 of 5")
    assert "the detector's own" in RemergeSummary(RunSummary(), 0, 0, "one-stage").lines()[-1]
    assert len(RemergeSummary(RunSummary(), 0, 0, "none").lines()) == 1


def test_remerge_decides_a_staged_plan_again_as_label_would(exported, dump, kept, tmp_path):
    from engine.label.escalation import Escalation

    first = ((128, False), (128, True))
    records, _ = read_run(kept)
    best = sorted({max((d["score"] for d in r["detections"]), default=0.0) for r in records})
    escalation = Escalation(first, "empty", (("score", (best[4] + best[5]) / 2),))
    staged = LabelSettings(RunManifest.load(kept).settings.labeling.plan, MergeSettings(score_floor=FLOOR),
                           escalation=escalation)
    summary = remerge(RemergeRequest(kept, tmp_path / "re", escalation=escalation, keypoints=exported["keypoints"][0]))
    expected = fresh(exported, dump, tmp_path / "fresh", staged)
    remerged, labeled = read_run(tmp_path / "re")[0], read_run(expected)[0]
    assert_same_records(remerged, labeled)
    assert [r["escalated"] for r in remerged] == [r["escalated"] for r in labeled]
    assert 0 < summary.run.escalated < summary.run.images
    # a staged run kept no second-stage candidates for the images it did not escalate
    label(dataclasses.replace(request(exported, dump, tmp_path / "staged", keep_candidates=True), labeling=staged))
    with pytest.raises(UserError, match="not every pass the plan needs ran"):
        remerge(RemergeRequest(tmp_path / "staged", tmp_path / "fixed", keypoints=exported["keypoints"][0]))


def test_label_refuses_keeping_candidates_on_ray(exported, dump, tmp_path, capsys):
    from engine.cli import main
    from tests.conftest import assert_cli_error
    from tests.engine.conftest import labeling_command

    command = labeling_command(exported, dump, tmp_path / "out", "--keep-candidates", "--ray")
    at = command.index("--workers")  # refused with --ray on its own
    del command[at:at + 2]
    assert_cli_error(capsys, main(command[3:]), "label", "--keep-candidates does not apply with --ray")
    assert not (tmp_path / "out").exists()
