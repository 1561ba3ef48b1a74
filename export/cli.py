"""`distill export onnx` and `distill export trt`.

torch, onnx and tensorrt are imported inside the command functions, so `distill --help`
works on a box without them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from engine.errors import UserError
from engine.options import PlanOptions, positive_int

TRT_PLAN = PlanOptions(flip=False)  # mirrored views have the same shapes: no --no-flip

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_parity_images() -> Path | None:
    """Real photos for the parity check: `$DISTILL_SHARED_DATA/coco-mini/images` or
    `../shared/data/coco-mini/images` beside the repository, when present."""
    root = Path(os.environ.get("DISTILL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    folder = root / "coco-mini" / "images"
    return folder if folder.is_dir() else None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="checkpoints to ONNX, ONNX to TensorRT engines",
                                   description="Export trained models for the labeling engine.")
    commands = parser.add_subparsers(dest="export_command", required=True, metavar="FORMAT")

    onnx = commands.add_parser("onnx", help="checkpoint -> ONNX with model card and a parity check")
    onnx.add_argument("--checkpoint", required=True, type=Path, help="trainer checkpoint (RUN/model.pt)")
    onnx.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    onnx.add_argument("--topk", type=int, default=1000, help="detector candidates per image (default 1000)")
    onnx.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    onnx.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    onnx.add_argument("--parity-images", type=Path, default=None,
                      help="folder of real images for the parity check (default: ../shared/data's "
                           "coco-mini when present, synthetic images otherwise)")
    onnx.add_argument("--parity-count", type=int, default=4, help="images used by the parity check")
    onnx.set_defaults(func=run_onnx)

    trt = commands.add_parser("trt", help="ONNX -> TensorRT engine with sidecar (needs tensorrt + GPU)")
    trt.add_argument("--onnx", required=True, type=Path, help="ONNX file from `distill export onnx`")
    trt.add_argument("--out", required=True, type=Path, help="engine file to write (sidecar: same name, .json)")
    trt.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    trt.add_argument("--calib-images", type=Path, default=None, help="real images for INT8 calibration")
    trt.add_argument("--calib-count", type=int, default=512, help="at most this many calibration images")
    # The same plan flags as distill label: one optimization profile per shorter side of
    # the plan, so `--plan` builds profiles for exactly the passes `label --plan` runs.
    TRT_PLAN.add(trt)
    trt.add_argument("--max-batch", type=positive_int, default=8, help="largest batch per profile (default 8)")
    trt.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GiB (default 4)")
    trt.add_argument("--cache-dir", type=Path, default=None,
                     help="engine cache (default $DISTILL_ENGINE_CACHE or ~/.cache/distill/engines)")
    trt.add_argument("--device", type=int, default=0, help="CUDA device index")
    trt.set_defaults(func=run_trt)


def run_onnx(args: argparse.Namespace) -> int:
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from engine.backends.torch_backend import TorchBackend
    from export.onnx_export import export_checkpoint
    from export.parity import run_parity, parity_feeds

    started = time.perf_counter()
    result, wrapper = export_checkpoint(args.checkpoint, args.out, topk=args.topk, opset=args.opset)
    print(f"wrote {result.path} ({result.card.task}, opset {result.opset}, {result.num_nodes} nodes, "
          f"{result.batchnorm_folded} BatchNorm folded) in {time.perf_counter() - started:.1f}s")
    if args.no_parity:
        return 0
    images = args.parity_images if args.parity_images is not None else default_parity_images()
    if args.parity_images is not None and not args.parity_images.is_dir():
        raise UserError(f"--parity-images folder not found: {args.parity_images}")
    feeds, source = parity_feeds(result.card, images, count=args.parity_count)
    report = run_parity(TorchBackend(wrapper, result.card), OnnxRuntimeBackend(result.path, providers="cpu"),
                        feeds, result.card, source)
    print(report.table())
    if not report.passed:
        # Keep the graph for inspection, but not under the name a pipeline would pick up.
        failed = result.path.with_suffix(".failed.onnx")
        os.replace(result.path, failed)
        raise UserError(f"{report.failure()}; graph kept as {failed}")
    return 0


def run_trt(args: argparse.Namespace) -> int:
    from engine.backends.tensorrt_backend import import_tensorrt

    import_tensorrt()  # one line and exit 2 where TensorRT is absent
    from engine.backends import cuda_memory as cm
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export import trt_build, trt_plan

    # The card and its agreement with the graph, checked by the engine's own reader.
    with OnnxRuntimeBackend(args.onnx, providers="cpu") as onnx_model:
        card = onnx_model.card
    assert card is not None
    plan = TRT_PLAN.parse(args)
    profiles = trt_plan.plan_profiles(card, list(plan.scales), plan.max_size, args.max_batch)
    trt_version = trt_build.tensorrt_version()
    gpu = cm.gpu_name(args.device)
    onnx_sha = trt_plan.file_sha256(args.onnx)
    calib_paths = []
    if args.precision == "int8":
        if args.calib_images is None:
            raise UserError("--precision int8 needs --calib-images DIR (real images to calibrate on)")
        calib_paths = trt_build.calibration_images(args.calib_images, args.calib_count)
    calib_sha = trt_plan.calibration_fingerprint(calib_paths) if calib_paths else ""
    key = trt_plan.engine_cache_key(onnx_sha, trt_version, gpu, args.precision, profiles, args.workspace, calib_sha)
    cache = trt_plan.EngineCache(args.cache_dir or trt_plan.EngineCache.default_root())
    if cache.lookup(key) is None:
        started = time.perf_counter()
        calibration = None
        if args.precision == "int8":
            batches = trt_build.calibration_batches(calib_paths, profiles[0].opt)
            calibration = (batches, cache.root / f"calib-{onnx_sha[:16]}-{calib_sha[:16]}.cache")
        timing = cache.root / f"timing-{trt_plan.engine_cache_key('', trt_version, gpu, 'fp32', [])[:16]}.cache"
        engine = trt_build.build_engine(args.onnx, profiles, args.precision, args.workspace, timing, calibration)
        document = trt_plan.sidecar_document(card, trt_version, gpu, args.precision, profiles, onnx_sha, key)
        cache.store(key, engine, document)
        print(f"built {args.precision} engine for {gpu} (TensorRT {trt_version}, {len(profiles)} profiles) "
              f"in {time.perf_counter() - started:.0f}s")
    else:
        print(f"engine cache hit {key[:12]}: same ONNX, TensorRT {trt_version}, GPU and settings")
    out = cache.copy_out(key, args.out)
    print(f"wrote {out} and {trt_plan.sidecar_path(out)}")
    return 0


if __name__ == "__main__":  # pragma: no cover - `distill export` is the entry point
    from engine.cli import main

    sys.exit(main(["export", *sys.argv[1:]]))
