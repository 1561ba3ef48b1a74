"""Input kinds side by side: `distill label` over the same images as loose files, as
tar shards (WebDataset convention), with --s3 as objects on a local S3 server, and with
--video as frames of videos against the same frames as JPEG files, measured in one run.

    .venv/bin/python -m benchmarks.input_throughput --detector D.onnx [--keypoints K.onnx] \
        --images DIR [--count 1000] [--per-shard 100] [--scales 160:224:32] [--repeats 2] \
        [--s3] [--video] [--out runs/bench-inputs]

The first `--count` images of DIR (cycled when it holds fewer) are copied into OUT/loose/
(copy-k/ sub-folders for the laps) and packed, in the same order, into OUT/shards/
{00000..}.tar, `--per-shard` images each. Each kind is labeled by the `distill label`
command a user runs, under `/usr/bin/time -v`, the kinds taking turns `--repeats` times;
the best of each counts. Images/s is the run's own (its manifest's wall time: models
loaded, pipeline start to end); peak RSS is the whole process's (`Maximum resident set
size`). The tar run's records must equal the loose run's apart from `file_name`. Prints a
table, writes OUT/input_throughput.json; the last line is `tar/loose=R rss tar/loose=M`
(and `s3/loose=R`). A second table times the input stage alone, in this process: the
sources found and decoded (`decode_source`) by `--workers` threads, no model, the kinds
taking turns `--repeats` times, so that what differs between the kinds is not lost in
inference time.

--s3 starts moto's S3 server on 127.0.0.1 in this process (pip install 'distill[storage,dev]'),
uploads OUT/loose/ to s3://bench/images and passes the endpoint and test credentials to
the s3 run through the environment, as a user's would come. A local server has no
network latency; what it shows is that the read-ahead keeps the pipeline fed when every
image is an HTTP request away.

--video resizes the loose images to the first one's size (even sides) and writes them,
in the same order, as MPEG-4 videos (OpenCV's `mp4v`, 25 fps) of `--per-shard` frames each
into OUT/video/; the frames decoded back from them are written as JPEG files (quality 95)
into OUT/frames/, so both kinds hold the same pictures. The video run is `--images
OUT/video --every-frame 1`, the frames run `--images OUT/frames`; their records are not
compared (JPEG is lossy), their counts are. The last line adds `video/frames=R`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import best_of_interleaved, write_report
import cv2

from engine.label.decode import decode_source
from engine.label.discover import discover_folder, open_sources
from engine.label.manifest import RunManifest
from engine.label.video import FrameSampling


def make_inputs(images: Path, count: int, per_shard: int, out: Path) -> tuple[Path, str, list[str]]:
    """(loose folder, brace pattern of the shards, loose names in shard order)."""
    sources = [s for s in discover_folder(images) if s.problem is None]
    loose, shards = out / "loose", out / "shards"
    for folder in (loose, shards):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    names = []
    for i in range(count):
        source, lap = sources[i % len(sources)], i // len(sources)
        name = source.name if lap == 0 else f"copy-{lap}/{source.name}"
        (loose / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.path, loose / name)
        names.append(name)
    # The loose run's order (sorted walk) decides which image goes in which shard.
    names = [s.name for s in discover_folder(loose)]
    shard_count = (len(names) + per_shard - 1) // per_shard
    for k in range(shard_count):
        with tarfile.open(shards / f"{k:05d}.tar", "w") as archive:
            for name in names[k * per_shard:(k + 1) * per_shard]:
                archive.add(loose / name, arcname=name, recursive=False)
    return loose, str(shards / f"{{00000..{shard_count - 1:05d}}}.tar"), names


def make_videos(loose: Path, names: list[str], per_video: int, out: Path) -> tuple[Path, Path]:
    """(folder of videos, folder of the same frames as JPEG files): see the module docstring."""
    videos, frames = out / "video", out / "frames"
    for folder in (videos, frames):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    height, width = cv2.imread(str(loose / names[0])).shape[:2]
    size = (width // 2 * 2, height // 2 * 2)  # MPEG-4 wants even sides
    for k in range(0, len(names), per_video):
        writer = cv2.VideoWriter(str(videos / f"{k // per_video:05d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                                 size)
        for name in names[k:k + per_video]:
            writer.write(cv2.resize(cv2.imread(str(loose / name)), size))
        writer.release()
    for n, source in enumerate(open_sources(videos, None, frames=FrameSampling(every=1))[1]):
        cv2.imwrite(str(frames / f"{n:06d}.jpg"), cv2.cvtColor(decode_source(source), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return videos, frames


@contextlib.contextmanager
def s3_server(loose: Path):
    """moto's S3 server on a free local port holding `loose` under s3://bench/images;
    yields the environment a run needs to reach it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}
    try:
        os.environ.update(env)
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        for path in sorted(p for p in loose.rglob("*") if p.is_file()):
            client.put_object(Bucket="bench", Key=f"images/{path.relative_to(loose).as_posix()}",
                              Body=path.read_bytes())
        yield env
    finally:
        server.stop()


def input_stage(given: str, workers: int) -> float:
    """Seconds to find and decode every image (every video frame) of `given` with
    `workers` threads (a video is decoded by the thread that walks it)."""
    start = time.perf_counter()
    _, sources = open_sources(given, None, frames=FrameSampling(every=1))
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda source: decode_source(source).shape, sources):
            pass
    return time.perf_counter() - start


def timed_label(command: list[str], out: Path) -> dict:
    """Run `command` (a distill label writing into `out`) under /usr/bin/time -v."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    summary = RunManifest.load(out).summary
    return {"images": summary.images, "failed": summary.failed, "wall_seconds": summary.wall_seconds,
            "images_per_second": summary.images / summary.wall_seconds, "peak_rss_mb": rss_kb / 1024,
            "decode_seconds": summary.stage_seconds["decode"], "discover_seconds": summary.stage_seconds["discover"]}


def records_of(out: Path) -> list[dict]:
    records = []
    for entry in RunManifest.load(out).shards:
        records += [json.loads(line) for line in (out / "shards" / entry.file).read_text().splitlines()]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--keypoints", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--per-shard", type=int, default=100)
    parser.add_argument("--scales", default="160:224:32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--s3", action="store_true", help="also from a local S3 server (moto)")
    parser.add_argument("--video", action="store_true",
                        help="also video frames against the same frames as JPEG files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="decode threads of the input-stage table (default: the CPU count)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-inputs"))
    args = parser.parse_args()

    loose, pattern, names = make_inputs(args.images, args.count, args.per_shard, args.out)
    base = [str(Path(sys.executable).parent / "distill"), "label", "--detector", str(args.detector),
            *(["--keypoints", str(args.keypoints)] if args.keypoints else []), "--scales", args.scales,
            "--max-detections", "10", "--no-progress"]
    videos, frames = make_videos(loose, names, args.per_shard, args.out) if args.video else (None, None)
    with s3_server(loose) if args.s3 else contextlib.nullcontext():
        kinds = {"loose": str(loose), "tar": pattern, **({"s3": "s3://bench/images"} if args.s3 else {}),
                 **({"frames": str(frames), "video": str(videos)} if args.video else {})}
        commands = {kind: [*base, "--images", given, "--out", str(args.out / f"run-{kind}"),
                           *(["--every-frame", "1"] if kind == "video" else [])]
                    for kind, given in kinds.items()}
        best = best_of_interleaved({kind: (lambda attempt, kind=kind: timed_label(commands[kind],
                                                                                  args.out / f"run-{kind}"))
                                    for kind in kinds}, args.repeats, seconds=lambda r: r["wall_seconds"])
        stage = best_of_interleaved({kind: (lambda attempt, given=given: input_stage(given, args.workers))
                                     for kind, given in kinds.items()}, args.repeats, warm_up=True)
    loose_records = records_of(args.out / "run-loose")
    for kind in kinds:
        records = records_of(args.out / f"run-{kind}")
        if kind in ("frames", "video"):  # other pixels than the loose images': counts only
            if len(records) != len(names):
                sys.exit(f"the {kind} run labeled {len(records)} images, not {len(names)}")
            continue
        if len(records) != len(names) or [{**r, "file_name": ""} for r in records] != \
                [{**r, "file_name": ""} for r in loose_records]:
            sys.exit(f"the {kind} run's records differ from the loose run's")
    print(f"{'input':8} {'images':>7} {'images/s':>9} {'peak RSS MB':>12} {'decode s':>9} {'discover s':>11}")
    for kind, result in best.items():
        print(f"{kind:8} {result['images']:7d} {result['images_per_second']:9.1f} {result['peak_rss_mb']:12.0f} "
              f"{result['decode_seconds']:9.2f} {result['discover_seconds']:11.2f}")
    print(f"input stage alone ({args.workers} threads, no model): " +
          ", ".join(f"{kind} {len(names) / seconds:.0f} images/s" for kind, seconds in stage.items()))
    for kind, command in commands.items():
        print(f"{kind}: {' '.join(command)}")
    write_report(args.out, "input_throughput.json", {"count": args.count, "per_shard": args.per_shard,
                                                      "scales": args.scales, "commands": commands, "best": best,
                                                      "input_stage_images_per_second": {
                                                          kind: len(names) / seconds for kind, seconds in stage.items()},
                                                      "records_identical_apart_from_file_name": True,
                                                      "video": args.video})
    loose_best = best["loose"]
    ratios = [f"{kind}/loose={best[kind]['images_per_second'] / loose_best['images_per_second']:.2f} "
              f"rss {kind}/loose={best[kind]['peak_rss_mb'] / loose_best['peak_rss_mb']:.2f}"
              for kind in kinds if kind in ("tar", "s3")]
    if args.video:
        ratios.append(f"video/frames={best['video']['images_per_second'] / best['frames']['images_per_second']:.2f} "
                      f"rss video/frames={best['video']['peak_rss_mb'] / best['frames']['peak_rss_mb']:.2f} "
                      f"stage video/frames={stage['frames'] / stage['video']:.2f}")
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
