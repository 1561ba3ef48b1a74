"""GPU readiness: the PyTorch backend on CUDA against ONNX Runtime on the CPU, then throughput.

    .venv/bin/python -m benchmarks.gpu_check --out runs/gpu_check            # on a CUDA box
    .venv/bin/python -m benchmarks.gpu_check --device cpu --quick --model tiny --out /tmp/gc

1. parity: an untrained detector (`--model r50` by default; its last head layers
   re-drawn so that scores and boxes spread as a trained model's do, see `spread_head`)
   exported to ONNX; the PyTorch backend on the device in fp32 and fp16 against ONNX
   Runtime on the CPU on the same feeds: max |diff| of boxes (px, and relative to the
   feed's longer side) and scores (relative to the reference's score range), and how
   many of the reference's top-100 candidates the candidate reproduces, at the export
   check's tolerances (export.parity) and at looser ones;
2. throughput in images/s of the backend over every view of synthetic 480x640 images,
   views made on the host (make_views + make_batches, every view crosses the bus) vs on
   the device (engine.label.device_views: only the original does), for plans of 1
   scale (800), 2 (600, 800) and 9 (400..1200), each mirrored, fp32 and fp16; plus the
   view-making step alone. Timed: view making, upload, `infer` up to host arrays; not
   timed: decoding and merging (the pipeline overlaps them in other threads);
3. FLOPs per image of each plan: torch.utils.flop_counter.FlopCounterMode over one
   forward per padded view shape (matmul and convolution FLOPs, 2 per multiply-add),
   summed over the plan's views;
4. the device's measured matrix throughput: a large torch.matmul in fp32, TF32 and fp16
   (TFLOP/s), and the achieved fraction = FLOPs/image x images/s / matmul FLOP/s, fp32
   runs against TF32 (cuDNN convolutions use TF32 by default) and fp16 against fp16.
Prints tables and writes OUT/gpu_check.json. Without CUDA it exits with one line and
status 2, unless `--device cpu` runs the same code on the CPU (`--quick`: small images,
plans scaled by 1/5, one repeat) so the path can be tested on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_report
from engine.label.batches import chunk_images, make_batches
from engine.label.views import Padding, TransformPlan, make_views
from engine.scaling import round_up, scaled_size

PLANS: dict[str, tuple[int, ...]] = {"1 scale": (800,), "2 scales": (600, 800),
                                     "9 scales": tuple(range(400, 1201, 100))}
QUICK_DIVISOR = 5  # --quick: every scale / 5 on images 1/5 the size
NUM_CLASSES = 80
TOPK = 1000
PARITY_TOP = 100
# "Agreement" at looser tolerances beside the export check's (IoU 0.99, score 1e-3, 0.01 px).
LOOSE_IOU, LOOSE_SCORE, LOOSE_BOX_PX = 0.9, 0.01, 0.5


def spread_head(model: Any, seed: int) -> None:
    """Re-draw an untrained FCOS's last head layers so parity compares spread-out outputs.

    A fresh head starts at the focal-loss prior with weights of std 0.01: every score is
    about sqrt(0.01 * 0.5) = 0.07 and every box nearly a point, so a top-K comparison
    would compare ties. Weights of std 0.03 on unit-variance GroupNorm features (fan-in
    9 x 256) give logits of std ~1; box distances around 2 strides."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    head = model.head
    with torch.no_grad():
        for conv, bias in ((head.cls_logits, -2.0), (head.bbox_pred, 2.0), (head.centerness, 0.0)):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.03)
            conv.bias.fill_(bias)


def build_detector(model_name: str, seed: int = 0) -> tuple[Any, Any]:
    """An untrained detector's flat export wrapper (eval, CPU) and its card."""
    import torch

    from export.onnx_export import DetectorExport, card_for_checkpoint
    from trainer.checkpoint import build_model
    from trainer.config import get_config

    torch.manual_seed(seed)
    model = build_model("detect", get_config("detect", model_name), NUM_CLASSES).eval()
    spread_head(model, seed)
    ckpt = {"task": "detect", "model_name": model_name,
            "categories": [{"id": i + 1, "name": f"class{i + 1}"} for i in range(NUM_CLASSES)]}
    card = card_for_checkpoint(ckpt, model, TOPK, checkpoint_sha256=f"untrained-seed{seed}")
    return DetectorExport(model, TOPK).eval(), card


# ---- 1. parity ----------------------------------------------------------------------
def parity_rows(ref: list[dict], test: list[dict], feeds: list[np.ndarray]) -> dict:
    """The parity numbers of one candidate against the reference on `feeds`."""
    from export.parity import compare_detector, match_top_candidates

    rows = {row.output: row for row in compare_detector(ref, test, top=PARITY_TOP)}
    side = max(max(f.shape[2:]) for f in feeds)
    top_scores = np.concatenate([np.sort(r["scores"], axis=1)[:, -PARITY_TOP:].ravel() for r in ref])
    score_range = float(top_scores.max() - top_scores.min()) or 1.0
    strict = match_top_candidates(ref, test, PARITY_TOP)  # the export check's tolerances
    loose = match_top_candidates(ref, test, PARITY_TOP, LOOSE_IOU, LOOSE_SCORE, LOOSE_BOX_PX)
    return {"boxes_max_abs_diff_px": rows["boxes"].max_abs_diff,
            "boxes_rel_to_side": rows["boxes"].max_abs_diff / side,
            "scores_max_abs_diff": rows["scores"].max_abs_diff,
            "scores_rel_to_range": rows["scores"].max_abs_diff / score_range,
            "top_matched_strict": strict.matched, "top_matched_loose": loose.matched, "top_checked": strict.checked,
            "export_check_passed": all(row.ok for row in rows.values())}


def run_parity(wrapper: Any, card: Any, onnx_path: Path, feeds: list[np.ndarray], device: str,
               precisions: list[str]) -> dict[str, dict]:
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from engine.backends.torch_backend import TorchBackend

    with OnnxRuntimeBackend(onnx_path, providers="cpu") as runtime:
        ref = [runtime.infer({card.input_name: f}) for f in feeds]
    result = {}
    for precision in precisions:
        with TorchBackend(wrapper, card, device=device, fp16=precision == "fp16") as eager:
            test = [eager.infer({card.input_name: f}) for f in feeds]
        result[precision] = parity_rows(ref, test, feeds)
    return result


# ---- 3. FLOPs and 4. matmul throughput ----------------------------------------------
def flops_per_image(wrapper: Any, device: Any, image_size: tuple[int, int], plan: TransformPlan,
                    stride: int) -> float:
    """Matmul + convolution FLOPs of every view of one image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    per_shape: dict[tuple[int, int], int] = {}
    total = 0
    for scale, _ in plan.passes:
        h, w = scaled_size(*image_size, scale, plan.max_size)
        shape = (round_up(h, stride), round_up(w, stride))
        if shape not in per_shape:
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                wrapper(torch.zeros((1, 3, *shape), dtype=torch.uint8, device=device))
            per_shape[shape] = counter.get_total_flops()
        total += per_shape[shape]
    return float(total)


def matmul_tflops(device: Any, n: int, repeats: int) -> dict[str, float]:
    """TFLOP/s of an (n, n) @ (n, n) torch.matmul: fp32 (full precision), and on CUDA
    TF32 and fp16. 2 n^3 FLOPs per product, timed after a warm-up."""
    import torch

    kinds = [("fp32", torch.float32, "highest")]
    if device.type == "cuda":
        kinds += [("tf32", torch.float32, "high"), ("fp16", torch.float16, "highest")]
    previous = torch.get_float32_matmul_precision()
    result = {}
    try:
        for name, dtype, precision in kinds:
            torch.set_float32_matmul_precision(precision)
            a = torch.randn((n, n), device=device, dtype=dtype)
            b = torch.randn((n, n), device=device, dtype=dtype)
            torch.matmul(a, b)
            _sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                torch.matmul(a, b)
            _sync(device)  # kernels are asynchronous: the clock stops when they finish
            result[name] = 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12
            del a, b
    finally:
        torch.set_float32_matmul_precision(previous)
    return result


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- 2. throughput ------------------------------------------------------------------
def host_batches(images: list[np.ndarray], plan: TransformPlan, stride: int, batch_size: int):
    """(B, 3, Hp, Wp) uint8 host batches of a chunk of images, as the pipeline makes them."""
    return [b.pixels for b in make_batches([make_views(i, plan, Padding(stride)) for i in images], batch_size)]


def device_batches(images: list[np.ndarray], plan: TransformPlan, stride: int, batch_size: int, device: Any):
    """The same batches made on `device` from the uploaded originals."""
    import torch

    from engine.label.device_views import make_device_views, upload

    views = [make_device_views(upload(i, device), plan, Padding(stride)) for i in images]
    return [b.pixels for b in make_batches(views, batch_size, stack=torch.stack)]


def throughput(backend: Any, images: list[np.ndarray], plan: TransformPlan, batch_size: int,
               where: str, repeats: int) -> dict[str, float]:
    """images/s of views + `infer` over `images` (`where`: "host" or "device" views), and
    of the view-making step alone; the first and last chunks first, as a warm-up (cuDNN
    autotunes every new shape). One thread, views then inference, no overlap: the
    pipeline makes host views in other threads while the device computes, so the
    host-views rate is a lower bound for it, the views-only rate its other ceiling."""
    stride = backend.card.max_stride
    device = backend.torch_device
    chunk = chunk_images(batch_size, plan)
    chunks = [images[s:s + chunk] for s in range(0, len(images), chunk)]

    def batches(part):
        if where == "host":
            return host_batches(part, plan, stride, batch_size)
        return device_batches(part, plan, stride, batch_size, device)

    name = backend.card.input_name
    for part in {0: chunks[0], -1: chunks[-1]}.values():  # a short last chunk has its own shapes
        for pixels in batches(part):
            backend.infer({name: pixels})
    start = time.perf_counter()
    for _ in range(repeats):
        for part in chunks:
            for pixels in batches(part):
                backend.infer({name: pixels})  # returns host arrays: the stream is synced
    total = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        for part in chunks:
            batches(part)
    _sync(device)
    views_only = time.perf_counter() - start
    count = len(images) * repeats
    return {"images_per_s": count / total, "views_only_images_per_s": count / views_only}


# ---- the script ---------------------------------------------------------------------
def settings_for(args: argparse.Namespace) -> dict:
    quick = args.quick
    divisor = QUICK_DIVISOR if quick else 1
    return {"plans": {name: tuple(s // divisor for s in scales) for name, scales in PLANS.items()},
            "max_size": 2000 // divisor,
            "image_size": (480 // divisor, 640 // divisor),
            "images": args.images or (2 if quick else 8),
            "repeats": args.repeats or (1 if quick else 3),
            "batch_size": args.batch_size,
            "parity_images": 1 if quick else 2,
            "parity_short_side": 800 // divisor,
            "matmul_n": 1024 if quick else 8192,
            "matmul_repeats": 10 if quick else 50}


def print_tables(report: dict) -> None:
    print(f"device: {report['device_name']}  torch {report['torch']}  model {report['model']}")
    print("matmul TFLOP/s: " + ", ".join(f"{k} {v:.3g}" for k, v in report["matmul_tflops"].items()))
    print(f"\nparity vs ONNX Runtime CPU ({report['parity_feeds']}):")
    print(f"{'precision':<9} {'boxes max|d| px':>15} {'rel':>8} {'scores max|d|':>13} {'rel':>8} "
          f"{'top-100 strict':>14} {'loose':>7} {'export check':>12}")
    for precision, row in report["parity"].items():
        print(f"{precision:<9} {row['boxes_max_abs_diff_px']:>15.3g} {row['boxes_rel_to_side']:>8.2g} "
              f"{row['scores_max_abs_diff']:>13.3g} {row['scores_rel_to_range']:>8.2g} "
              f"{row['top_matched_strict']:>6}/{row['top_checked']:<7} {row['top_matched_loose']:>7} "
              f"{'ok' if row['export_check_passed'] else 'FAIL':>12}")
    print(f"\nthroughput ({report['settings']['images']} images {report['settings']['image_size']}, "
          f"batch {report['settings']['batch_size']}, {report['settings']['repeats']} repeats):")
    print(f"{'plan':<9} {'views':>5} {'GFLOP/img':>9} {'prec':<5} {'views on':<8} {'img/s':>8} "
          f"{'views-only img/s':>16} {'TFLOP/s':>8} {'of matmul':>9}")
    for row in report["throughput"]:
        print(f"{row['plan']:<9} {row['views_per_image']:>5} {row['flops_per_image'] / 1e9:>9.1f} "
              f"{row['precision']:<5} {row['views']:<8} {row['images_per_s']:>8.2f} "
              f"{row['views_only_images_per_s']:>16.1f} {row['achieved_tflops']:>8.2f} "
              f"{row['fraction_of_matmul']:>8.1%} ({row['matmul_reference']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for the code path")
    parser.add_argument("--model", default="r50", choices=("r50", "tiny"), help="detector config (default r50)")
    parser.add_argument("--quick", action="store_true", help="small images and plans, one repeat")
    parser.add_argument("--images", type=int, help="images per throughput run (default 8, quick 2)")
    parser.add_argument("--repeats", type=int, help="timed passes over the images (default 3, quick 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="views per backend call (default 8)")
    args = parser.parse_args(argv)

    import torch

    from engine.backends.torch_backend import TorchBackend, check_device, resolve_device
    from engine.errors import UserError

    try:
        check_device(args.device, fp16=False)
    except UserError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); run it on a GPU box, or pass --device cpu for the CPU code path",
              file=sys.stderr)
        return 2
    device = resolve_device(torch, args.device, fp16=False)  # "auto": CUDA, present here
    settings = settings_for(args)
    precisions = ["fp32", "fp16"] if device.type == "cuda" else ["fp32"]

    from export.onnx_export import export_module
    from export.parity import detector_feeds, synthetic_images

    wrapper, card = build_detector(args.model)
    stride = card.max_stride
    parity_images = synthetic_images(settings["parity_images"], seed=1, size=settings["image_size"])
    feeds = detector_feeds(parity_images, settings["parity_short_side"], settings["max_size"], stride)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        onnx_path = Path(scratch) / "detector.onnx"
        export_module(wrapper, card, onnx_path)
        parity = run_parity(wrapper, card, onnx_path, feeds, args.device, precisions)

    report: dict[str, Any] = {
        "device": str(device), "model": args.model, "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "settings": settings,
        "parity_feeds": f"synthetic images, feeds {[list(f.shape) for f in feeds]}",
        "parity": parity,
        "matmul_tflops": matmul_tflops(device, settings["matmul_n"], settings["matmul_repeats"]),
    }
    images = synthetic_images(settings["images"], seed=2, size=settings["image_size"])
    plans = {name: TransformPlan.grid(scales, True, settings["max_size"])
             for name, scales in settings["plans"].items()}
    wrapper = wrapper.to(device)
    flops = {name: flops_per_image(wrapper, device, settings["image_size"], plan, stride)
             for name, plan in plans.items()}
    report["flops_per_image"] = flops
    # fp32 convolutions run in TF32 where cuDNN allows it (torch's default), so their
    # ceiling is the TF32 matmul.
    tf32 = "tf32" in report["matmul_tflops"] and torch.backends.cudnn.allow_tf32
    rows = []
    for precision in precisions:
        reference = "tf32" if precision == "fp32" and tf32 else precision
        peak = report["matmul_tflops"][reference] * 1e12
        with TorchBackend(wrapper, card, device=args.device, fp16=precision == "fp16") as backend:
            for name, plan in plans.items():
                value = flops[name]
                for where in ("host", "device"):
                    rates = throughput(backend, images, plan, args.batch_size, where, settings["repeats"])
                    achieved = value * rates["images_per_s"]
                    rows.append({"plan": name, "scales": list(plan.scales), "views_per_image": len(plan.passes),
                                 "precision": precision, "views": where, **rates,
                                 "flops_per_image": value, "achieved_tflops": achieved / 1e12,
                                 "fraction_of_matmul": achieved / peak if math.isfinite(peak) and peak else 0.0,
                                 "matmul_reference": reference})
    report["throughput"] = rows
    print_tables(report)
    print(f"\nwrote {write_report(args.out, 'gpu_check.json', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
