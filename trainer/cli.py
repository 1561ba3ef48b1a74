"""`distill train` and `distill eval`. torch is imported inside `run_*` so that
`distill --help` works on a box without it."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a teacher (FCOS detector or top-down keypoint model)")
    train.add_argument("--task", required=True, help="detect | keypoints")
    train.add_argument("--train-json", required=True, help="COCO annotation file")
    train.add_argument("--train-images", required=True, help="folder of the training images")
    train.add_argument("--val-json", help="COCO file to evaluate on after training")
    train.add_argument("--val-images", help="folder of the validation images")
    train.add_argument("--model", required=True, help="tiny | r50")
    train.add_argument("--iters", type=int, required=True, help="training iterations")
    train.add_argument("--batch-size", type=int, required=True, help="images (detect) or crops (keypoints) per step, over all processes")
    train.add_argument("--out", required=True, help="run folder: model.pt, last.pt, metrics.json")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    train.add_argument("--lr", type=float, help="base LR override (default: config LR x batch/16)")
    train.add_argument("--checkpoint-every", type=int, default=500, help="iterations between checkpoints (0: only at the end)")
    train.add_argument("--workers", type=int, default=2, help="data-loading processes")
    train.add_argument("--init", help="initial weights from a distill checkpoint (matching tensors only): "
                       "fine-tune instead of training from scratch")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="change one field of the model config, VALUE in JSON (repeatable), e.g. "
                            "--set train_min_sizes=[160,192] --set test_min_size=176")
    train.add_argument("--pseudo-json", help="generated labels (distill select) to train a student on, beside the labeled "
                       "set: its COCO file, or the folder (or index.json) of distill select --shards, read an entry at "
                       "a time")
    train.add_argument("--pseudo-images", help="folder the generated labels' file names are relative to (the labeled run's input)")
    train.add_argument("--ratio", type=float, default=0.6,
                       help="expected labeled fraction of every minibatch with --pseudo-json (default 0.6: the paper's 6:4)")
    train.add_argument("--schedule-scale", type=float, default=1.0,
                       help="multiply --iters by X; the LR steps (70%%, 90%%) move with it (default 1)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, help="torch CPU threads (default: available cores / processes)")
    pretrained = train.add_argument_group(
        "pretrained backbone", "start the ResNet from ImageNet weights, fine-tuned as Detectron does")
    pretrained.add_argument("--backbone-weights", metavar="FILE",
                            help="ImageNet ResNet state dict with torchvision/timm names (conv1, bn1, layer1..4; fc is "
                                 "ignored): .pth/.pt/.bin, or .safetensors with the safetensors package; --model r50 "
                                 "takes ResNet-50 weights")
    pretrained.add_argument("--freeze-at", type=int, metavar="N",
                            help="parts without gradients, as Detectron's FREEZE_AT: 0 none, 1 the stem, 2 stem + res2 "
                                 "(default), ... 5 the whole ResNet-50")
    pretrained.add_argument("--no-frozen-bn", dest="frozen_bn", action="store_false",
                            help="train the BatchNorms of the parts that train (default: statistics and affine frozen)")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("eval", help="COCO AP of a checkpoint on a COCO file")
    evaluate.add_argument("--checkpoint", required=True, help="RUN/model.pt")
    evaluate.add_argument("--json", required=True, help="COCO annotation file (ground truth)")
    evaluate.add_argument("--images", required=True, help="folder of its images")
    evaluate.add_argument("--detector", help="detector checkpoint: keypoints on its person boxes instead of GT boxes")
    evaluate.add_argument("--threads", type=int)
    evaluate.add_argument("--out", help="also write the stats JSON to this file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar and COCO table: only the JSON line")
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from trainer.train import TrainOptions, train

    options = TrainOptions(
        task=args.task, train_json=args.train_json, train_images=args.train_images, model=args.model,
        iters=args.iters, batch_size=args.batch_size, out=args.out, val_json=args.val_json,
        val_images=args.val_images, resume=args.resume, lr=args.lr, checkpoint_every=args.checkpoint_every,
        workers=args.workers, init=args.init, seed=args.seed, threads=args.threads,
        overrides=tuple(args.overrides), pseudo_json=args.pseudo_json, pseudo_images=args.pseudo_images, ratio=args.ratio,
        schedule_scale=args.schedule_scale, backbone_weights=args.backbone_weights, freeze_at=args.freeze_at,
        frozen_bn=args.frozen_bn,
    )
    metrics = train(options)
    ap = {k: v for k, v in metrics.items() if k in ("box_AP", "keypoint_AP")}
    if ap:
        print(" ".join(f"{k}={v:.4f}" for k, v in ap.items()))
    print(f"wrote {options.out}/model.pt and {options.out}/metrics.json")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from engine.errors import UserError
    from trainer.checkpoint import build_model_from_checkpoint, load_checkpoint
    from trainer.config import config_from_dict
    from trainer.data.coco import load_annotations
    from trainer.evaluate import evaluate_detector, evaluate_keypoints
    from trainer.train import set_threads

    set_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    detector_ckpt = load_checkpoint(args.detector) if args.detector else None
    coco = load_annotations(args.json, args.images)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model_from_checkpoint(ckpt).to(device)
    config = config_from_dict(ckpt["task"], ckpt["config"])
    if ckpt["task"] == "detect":
        if detector_ckpt is not None:
            raise UserError("--detector only applies to a keypoint checkpoint")
        stats = evaluate_detector(model, coco, args.images, ckpt["categories"], config.test_min_size, config.test_max_size,
                                  device, args.quiet)
    else:
        detector = detector_meta = None
        if detector_ckpt is not None:
            if detector_ckpt["task"] != "detect":
                raise UserError(f"--detector {args.detector} is a {detector_ckpt['task']} checkpoint, not a detector")
            detector = build_model_from_checkpoint(detector_ckpt).to(device)
            det_config = config_from_dict("detect", detector_ckpt["config"])
            detector_meta = {"categories": detector_ckpt["categories"], "min_size": det_config.test_min_size, "max_size": det_config.test_max_size}
            if not any(c["name"] == "person" for c in detector_meta["categories"]):
                raise UserError(f"--detector {args.detector} has no 'person' category")
        stats = evaluate_keypoints(model, coco, args.images, device, config.padding, detector, detector_meta, args.quiet)
    print(json.dumps(stats))
    if args.out:
        from engine.atomic import write_json_atomically

        write_json_atomically(args.out, stats, indent=2)
    return 0
