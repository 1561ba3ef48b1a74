"""`distill train` behind the CLI: build data, model, optimizer; run the loop; evaluate.

Writes RUN/model.pt (final weights + optimizer/scheduler state for --resume),
RUN/last.pt every --checkpoint-every iterations, and RUN/metrics.json.

A student (data distillation) adds generated labels: `pseudo_json`/`pseudo_images` join
the labeled set and every minibatch mixes the two at `ratio` (trainer.data.mixing);
`schedule_scale` lengthens the run, the LR steps moving with it.

`backbone_weights` starts the ResNet from an ImageNet state dict (trainer.pretrained)
with Detectron's fine-tuning defaults: frozen BatchNorm and the stem and res2 frozen
(`freeze_at` 2). The loaded weights live on in every checkpoint, so --resume never
reads the file again.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.coco.schema import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON
from engine.errors import UserError
from trainer import distributed
from trainer.checkpoint import build_model, load_checkpoint, save_checkpoint
from trainer.config import (
    TASKS, BackboneConfig, config_from_dict, config_to_dict, get_config, override_config, with_pretrained_backbone,
)
from trainer.data.coco import category_table, load_annotations, load_generated
from trainer.loop import CheckpointHook, ProgressHook, Trainer, cycle
from trainer.pretrained import load_backbone_weights
from trainer.schedule import WarmupMultiStepLR


@dataclass
class TrainOptions:
    task: str
    train_json: str
    train_images: str
    model: str
    iters: int
    batch_size: int
    out: str
    val_json: str | None = None
    val_images: str | None = None
    resume: bool = False
    lr: float | None = None
    checkpoint_every: int = 500
    workers: int = 2
    init: str | None = None
    seed: int = 0
    threads: int | None = None
    overrides: tuple[str, ...] = ()  # KEY=VALUE config changes (--set)
    pseudo_json: str | None = None
    pseudo_images: str | None = None
    ratio: float = 0.6
    schedule_scale: float = 1.0
    backbone_weights: str | None = None  # ImageNet ResNet state dict (torchvision / timm names)
    freeze_at: int | None = None  # with backbone_weights; None: Detectron's default, 2
    frozen_bn: bool = True  # with backbone_weights: BatchNorm statistics and affine fixed

    @property
    def total_iters(self) -> int:
        """Iterations after --schedule-scale (the LR steps are fractions of this)."""
        return max(1, round(self.iters * self.schedule_scale))


def set_threads(threads: int | None) -> None:
    """Use the cores this process may run on; DataLoader workers get one thread each."""
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            threads = os.cpu_count() or 1
        threads = max(1, threads // max(distributed.world_size(), 1))
    torch.set_num_threads(threads)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    torch.set_num_threads(1)
    # Each worker holds a copy of the datasets' RNGs: reseed them so workers differ.
    for number, dataset in enumerate(getattr(info.dataset, "datasets", [info.dataset])):
        dataset.rng.seed(torch.initial_seed() + number)


DEFAULT_FREEZE_AT = 2  # Detectron's MODEL.BACKBONE.FREEZE_AT: the stem and res2


def model_config(options: TrainOptions):
    """The named config with --set overrides and, with --backbone-weights, the pretrained
    backbone's norm and frozen parts; UserError for a bad name, --set or --freeze-at."""
    config = override_config(get_config(options.task, options.model), list(options.overrides))
    if options.backbone_weights is None:
        return config
    freeze_at = DEFAULT_FREEZE_AT if options.freeze_at is None else options.freeze_at
    try:
        return with_pretrained_backbone(config, freeze_at, options.frozen_bn)
    except UserError as error:
        raise UserError(f"--freeze-at: {error}") from None


def check_options(options: TrainOptions) -> None:
    if options.task not in TASKS:
        raise UserError(f"unknown task {options.task!r} (choose from {', '.join(TASKS)})")
    if options.backbone_weights is None and (options.freeze_at is not None or not options.frozen_bn):
        raise UserError("--freeze-at and --no-frozen-bn apply only with --backbone-weights")
    if options.backbone_weights is not None and options.init is not None:
        raise UserError("--init and --backbone-weights both set the starting weights: choose one")
    model_config(options)
    if options.iters <= 0 or options.batch_size <= 0:
        raise UserError("--iters and --batch-size must be positive")
    if (options.val_json is None) != (options.val_images is None):
        raise UserError("--val-json and --val-images go together")
    if (options.pseudo_json is None) != (options.pseudo_images is None):
        raise UserError("--pseudo-json and --pseudo-images go together")
    if options.schedule_scale <= 0:
        raise UserError(f"--schedule-scale must be positive, got {options.schedule_scale}")
    if options.pseudo_json is not None:
        from trainer.data.mixing import check_ratio

        check_ratio(options.ratio, options.batch_size)
    if options.batch_size % distributed.world_size():
        raise UserError(f"--batch-size {options.batch_size} is not divisible by {distributed.world_size()} processes")


def make_meta(task: str, categories: list[dict], config) -> dict:
    meta = {"categories": categories}
    if task == "keypoints":
        meta.update(
            keypoint_names=list(KEYPOINT_NAMES),
            flip_pairs=[list(p) for p in FLIP_PAIRS],
            skeleton=[list(s) for s in SKELETON],
            input_size=list(config.input_size),
        )
    return meta


def train(options: TrainOptions) -> dict:
    """Train, save, evaluate; returns the metrics dict (also written to RUN/metrics.json)."""
    check_options(options)
    device = distributed.init_from_env()
    try:
        return _train(options, device)
    finally:
        distributed.cleanup()


def _train(options: TrainOptions, device: torch.device) -> dict:
    set_threads(options.threads)
    seed = options.seed + distributed.rank()
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    config = model_config(options)
    train_coco = load_annotations(options.train_json, options.train_images)
    val_coco = load_annotations(options.val_json, options.val_images) if options.val_json else None
    out = Path(options.out)
    final_path, last_path = out / "model.pt", out / "last.pt"

    resume_ckpt = None
    if options.resume:
        candidates = [p for p in (last_path, final_path) if p.is_file()]
        if not candidates:
            raise UserError(f"--resume: no checkpoint in {out}")
        resume_ckpt = max((load_checkpoint(p) for p in candidates), key=lambda c: c["iteration"])
        if resume_ckpt["task"] != options.task or resume_ckpt["model_name"] != options.model:
            raise UserError(f"--resume: {out} holds a {resume_ckpt['task']}/{resume_ckpt['model_name']} run")
        check_same_backbone(config_from_dict(options.task, resume_ckpt["config"]).backbone, config.backbone, out)

    dataset, categories, collate = build_dataset(options.task, config, train_coco, options.train_images, seed)
    if len(dataset) == 0:
        raise UserError(f"{options.train_json} has nothing to train on for task {options.task!r}")
    generated = None
    if options.pseudo_json is not None:
        pseudo_coco = load_generated(options.pseudo_json, options.pseudo_images)
        check_same_categories(train_coco, pseudo_coco, options.pseudo_json)
        generated, _, _ = build_dataset(options.task, config, pseudo_coco, options.pseudo_images, seed + 1, categories)
        if len(generated) == 0:
            raise UserError(f"{options.pseudo_json} has no generated label to train on for task {options.task!r}")

    model = build_model(options.task, config, len(categories)).to(device)
    if options.init and resume_ckpt is None:
        _load_init(model, options.init)
    if options.backbone_weights and resume_ckpt is None:
        # On --resume the checkpoint already holds these weights, trained further: the
        # file is not read again.
        try:
            loaded = load_backbone_weights(model.backbone, options.backbone_weights)
        except UserError as error:
            raise UserError(f"--backbone-weights {error}") from None
        print(f"--backbone-weights: loaded {loaded} backbone tensors from {options.backbone_weights}")
    base_lr = options.lr if options.lr is not None else config.base_lr * options.batch_size / 16
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue  # a frozen backbone part: weight decay would still move it
        # No weight decay on norm affine parameters, biases and the FCOS level scales.
        (no_decay if param.ndim <= 1 else decay).append(param)
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=base_lr, momentum=0.9,
    )
    total_iters = options.total_iters
    scheduler = WarmupMultiStepLR(optimizer, base_lr, total_iters, config.warmup_iters)
    start_iter = 0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict"])
        if "optimizer" in resume_ckpt:
            optimizer.load_state_dict(resume_ckpt["optimizer"])
        if "scheduler" in resume_ckpt:
            scheduler.load_state_dict(resume_ckpt["scheduler"])
        start_iter = int(resume_ckpt["iteration"])

    train_model = model
    if distributed.is_distributed():
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    per_rank = options.batch_size // distributed.world_size()
    if generated is None:
        sampler = distributed.InfiniteShardedSampler(len(dataset), seed=options.seed, start=start_iter * per_rank)
        batching = {"batch_size": per_rank, "sampler": sampler}
    else:
        from trainer.data.mixing import MixedBatchSampler

        batching = {"batch_sampler": MixedBatchSampler(
            len(dataset), len(generated), options.batch_size, options.ratio, seed=options.seed, start=start_iter,
            rank=distributed.rank(), world=distributed.world_size())}
        dataset = torch.utils.data.ConcatDataset([dataset, generated])
    loader = torch.utils.data.DataLoader(
        dataset, **batching, num_workers=options.workers, collate_fn=collate,
        worker_init_fn=_worker_init if options.workers > 0 else None, persistent_workers=options.workers > 0,
        pin_memory=device.type == "cuda",
    )
    loss_fn = _detect_loss(device) if options.task == "detect" else _keypoint_loss(device)
    meta = make_meta(options.task, categories, config)

    def save(iteration: int, path: Path) -> None:
        save_checkpoint(
            path, model=model, task=options.task, model_name=options.model, config=config_to_dict(config),
            meta=meta, iteration=iteration, optimizer=optimizer, scheduler=scheduler,
        )

    hooks = [
        ProgressHook(),
        CheckpointHook(options.checkpoint_every, lambda it: save(it, last_path)),
    ]
    trainer = Trainer(train_model, optimizer, scheduler, cycle(loader), loss_fn, total_iters, start_iter, device, hooks)
    if start_iter < total_iters:
        trainer.train()
    if distributed.is_main_process():
        save(max(start_iter, trainer.iteration), final_path)

    metrics: dict = {
        "task": options.task, "model": options.model, "iterations": total_iters,
        "schedule_scale": options.schedule_scale, "start_iteration": start_iter,
        "init": options.init, "backbone_weights": options.backbone_weights, "generated": _generated_summary(options, generated),
        "batch_size": options.batch_size, "base_lr": base_lr,
        "train_seconds": round(getattr(hooks[0], "seconds", 0.0), 1),
        "final_loss": trainer.loss_history[-1] if trainer.loss_history else None,
    }
    if val_coco is not None and distributed.is_main_process():
        metrics.update(evaluate_model(options.task, model, config, val_coco, options.val_images, categories, device))
    if distributed.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    distributed.barrier()
    return metrics


def evaluate_model(task: str, model, config, coco, images_dir: str, categories: list[dict], device, quiet: bool = False) -> dict:
    """COCOeval statistics, keyed `box_AP`, ... or `keypoint_AP`, ... (engine.coco.evaluate)."""
    from trainer.evaluate import evaluate_detector, evaluate_keypoints

    if task == "detect":
        return evaluate_detector(model, coco, images_dir, categories, config.test_min_size, config.test_max_size, device, quiet)
    return evaluate_keypoints(model, coco, images_dir, device, config.padding, quiet=quiet)


def build_dataset(task: str, config, coco, images_dir: str, seed: int, categories: list[dict] | None = None):
    """(training dataset, categories [{"id", "name"}] in class-index order, collate function).

    `categories` fixes the class indices (a generated set uses its labeled set's)."""
    if task == "detect":
        from trainer.data.detection import DetectionCollate, DetectionDataset

        dataset = DetectionDataset(coco, images_dir, config.train_min_sizes, config.train_max_size, train=True,
                                   seed=seed, categories=categories)
        return dataset, dataset.categories, DetectionCollate(max(config.strides))
    from trainer.data.keypoints import KeypointDataset, keypoint_collate

    dataset = KeypointDataset(coco, images_dir, config, train=True, seed=seed)
    if categories is None:
        person = _person_id(coco)
        categories = [c for c in category_table(coco) if c["id"] == person]
    return dataset, categories, keypoint_collate


def check_same_backbone(saved: BackboneConfig, wanted: BackboneConfig, out: Path) -> None:
    """UserError when --resume would rebuild the backbone differently from the run it
    continues (another norm or frozen parts: other --backbone-weights / --freeze-at /
    --no-frozen-bn flags than the run started with)."""
    if saved == wanted:
        return

    def shown(backbone: BackboneConfig) -> str:
        return f"norm {backbone.norm}, freeze_at {backbone.freeze_at}"

    raise UserError(f"--resume: {out} was started with backbone {shown(saved)}, these flags give {shown(wanted)}: "
                    "repeat the flags it was started with (--backbone-weights, --freeze-at, --no-frozen-bn)")


def check_same_categories(labeled, generated, generated_path: str) -> None:
    """UserError when the generated set names categories the labeled set lacks (or
    renames one): its labels would land on the wrong classes."""
    known = {c["id"]: c["name"] for c in category_table(labeled)}
    foreign = [f"{c['id']}:{c['name']}" for c in category_table(generated) if known.get(c["id"]) != c["name"]]
    if foreign:
        raise UserError(f"--pseudo-json {generated_path}: categories not in the labeled set: {', '.join(foreign)}")


def _generated_summary(options: TrainOptions, generated) -> dict | None:
    if generated is None:
        return None
    return {"json": options.pseudo_json, "items": len(generated), "ratio": options.ratio}


def _person_id(coco) -> int:
    from trainer.data.coco import person_category_id

    return person_category_id(coco)


def _load_init(model: torch.nn.Module, path: str) -> None:
    """Copy every tensor of the --init checkpoint whose name and shape match."""
    ckpt = load_checkpoint(path)
    own = model.state_dict()
    matched = {k: v for k, v in ckpt["state_dict"].items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise UserError(f"--init {path}: no weights match this model")
    model.load_state_dict(matched, strict=False)
    print(f"--init: loaded {len(matched)}/{len(own)} tensors from {path}")


def _detect_loss(device: torch.device):
    def loss_fn(model, batch):
        images, targets, _ = batch
        return model(images.to(device, non_blocking=True), targets)

    return loss_fn


def _keypoint_loss(device: torch.device):
    def loss_fn(model, batch):
        crops, heatmaps, weights, _ = batch
        logits = model(crops.to(device, non_blocking=True), logits=True).float()
        return {"loss_heatmap": heatmap_loss(logits, heatmaps.to(device), weights.to(device))}

    return loss_fn


def heatmap_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Visibility-weighted spatial cross-entropy against the Gaussian targets.

    logits (B, J, h, w); targets (B, J, h, w) Gaussians (normalized here to a distribution
    over the map); weights (B, J), 0 for unlabelled joints. Averaged over B * J.
    Why not MSE: from scratch under SGD, MSE on heatmaps sat for hundreds of iterations
    at "predict zeros" and diverged above LR ~0.004; the cross-entropy trains at the
    recipe's LR (0.02 x batch/16) and reached ~2.6 heatmap px argmax error in 300 steps.
    """
    target = targets.flatten(2)
    target = target / target.sum(dim=2, keepdim=True).clamp(min=1e-6)
    per_joint = -(target * torch.log_softmax(logits.flatten(2), dim=2)).sum(dim=2)
    return (per_joint * weights).sum() / max(weights.numel(), 1)
