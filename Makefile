# The distillation loop as targets. Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo
# Extras installed into the local environment; add `trt` on a TensorRT box.
EXTRAS ?= train,export,dev

.PHONY: setup test demo demo-steps export clean

setup: $(STAMP)

# Reinstalls only when the dependency set changes, so `make test` stays idempotent.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

# ---- demo: synthetic data -> two tiny teachers -> COCO evaluation -> table ------------
# Every step is a file target, so a second `make demo` reuses what the first one made
# and an interrupted run resumes (`--resume` continues from the run's last checkpoint).
# Each step prints "[demo] step NAME took N s", and the demo its total at the end.
# Sized for about 3 minutes on a slow 2-core CPU (the training part: data, both teachers
# and their evaluation): 320x320 images with larger people and objects, less clutter and
# yaw (DEMO_SYNTH, SynthConfig overrides; see docs/synth.md), and short runs. Short runs
# learn most per CPU second with small batches: the detector keeps the scaled LR
# (0.02 x 2/16); the keypoint model needs 0.08 rather than the scaled 0.01 to get past
# its flat start within 400 steps. More iterations give better teachers.
DEMO_SYNTH ?= docs/demo-synth.json
DEMO_TRAIN_IMAGES ?= 200
DEMO_VAL_IMAGES ?= 50
DEMO_DET_ITERS ?= 500
DEMO_DET_BATCH ?= 2
DEMO_DET_LR ?=
DEMO_KP_ITERS ?= 400
DEMO_KP_BATCH ?= 8
DEMO_KP_LR ?= 0.08
# Checkpoints often enough that an interrupted run has something to resume from.
DEMO_CHECKPOINT_EVERY ?= 100
TIMED = bash scripts/timed.sh
DATA_ARGS = --train-json $(DEMO)/data/train/annotations.json --train-images $(DEMO)/data/train/images \
	--val-json $(DEMO)/data/val/annotations.json --val-images $(DEMO)/data/val/images

# --resume only where an interrupted run left a checkpoint behind.
resume_if_started = $(if $(wildcard $(DEMO)/$(1)/last.pt $(DEMO)/$(1)/model.pt),--resume)

# A sub-make, so that the total covers every step (variables given to `make demo` pass on).
demo:
	@$(TIMED) "make demo: all steps" $(MAKE) --no-print-directory demo-steps

demo-steps: $(DEMO)/detector/metrics.json $(DEMO)/keypoints/metrics.json $(DEMO)/labels/ensemble.json $(DEMO)/labels/single.json
	$(TIMED) "step summary" $(BIN)/python -m trainer.summary $(DEMO)/detector $(DEMO)/keypoints
	@echo "labels of $(DEMO_UNLABELED_IMAGES) unlabeled images, scored against their hidden ground truth"
	@echo "(single: one pass at $(DEMO_SINGLE_SCALE) px; ensemble: $(DEMO_SCALES) each mirrored; keypoints on the labels' own person boxes):"
	$(TIMED) "step score-labels" $(BIN)/python -m engine.select.evaluate --gt $(DEMO)/data/unlabeled/annotations.json \
		--labels single=$(DEMO)/labels/single.json --labels ensemble=$(DEMO)/labels/ensemble.json

# ---- label: the exported teachers label an unlabeled synthetic set -----------------------
# Its annotations.json is ground truth the engine never reads: only the score step uses it.
# The full plan at scales suited to 320 px images (the teachers train at 256..352): 7
# shorter sides x mirror = 14 passes, against the single pass at the teachers' test size.
DEMO_UNLABELED_IMAGES ?= 60
DEMO_SCALES ?= 224:416:32
DEMO_SINGLE_SCALE ?= 320
LABEL_ARGS = --detector $(DEMO)/detector.onnx --keypoints $(DEMO)/keypoints.onnx \
	--images $(DEMO)/data/unlabeled/images --no-progress
# --resume only where an interrupted labeling run left a manifest behind.
resume_label = $(if $(wildcard $(DEMO)/labels/$(1)/manifest.json),--resume)

$(DEMO)/data/unlabeled/annotations.json: $(DEMO_SYNTH) | $(STAMP)
	$(TIMED) "step synth-unlabeled" $(BIN)/distill synth --out $(DEMO)/data/unlabeled \
		--images $(DEMO_UNLABELED_IMAGES) --seed 3 $(if $(DEMO_SYNTH),--config $(DEMO_SYNTH))

$(DEMO)/labels/ensemble.json: $(DEMO)/detector.onnx $(DEMO)/keypoints.onnx $(DEMO)/data/unlabeled/annotations.json
	$(TIMED) "step label-ensemble" $(BIN)/distill label $(LABEL_ARGS) --scales $(DEMO_SCALES) \
		--out $(DEMO)/labels/ensemble $(call resume_label,ensemble)
	$(TIMED) "step select-ensemble" $(BIN)/distill select --predictions $(DEMO)/labels/ensemble --out $@

$(DEMO)/labels/single.json: $(DEMO)/detector.onnx $(DEMO)/keypoints.onnx $(DEMO)/data/unlabeled/annotations.json
	$(TIMED) "step label-single" $(BIN)/distill label $(LABEL_ARGS) --scales $(DEMO_SINGLE_SCALE) --no-flip \
		--no-keypoint-flip --out $(DEMO)/labels/single $(call resume_label,single)
	$(TIMED) "step select-single" $(BIN)/distill select --predictions $(DEMO)/labels/single --out $@

$(DEMO)/data/train/annotations.json: $(DEMO_SYNTH) | $(STAMP)
	$(TIMED) "step synth-train" $(BIN)/distill synth --out $(DEMO)/data/train --images $(DEMO_TRAIN_IMAGES) \
		--seed 1 $(if $(DEMO_SYNTH),--config $(DEMO_SYNTH))

$(DEMO)/data/val/annotations.json: $(DEMO_SYNTH) | $(STAMP)
	$(TIMED) "step synth-val" $(BIN)/distill synth --out $(DEMO)/data/val --images $(DEMO_VAL_IMAGES) \
		--seed 2 $(if $(DEMO_SYNTH),--config $(DEMO_SYNTH))

$(DEMO)/detector/metrics.json: $(DEMO)/data/train/annotations.json $(DEMO)/data/val/annotations.json
	$(TIMED) "step train-detector" $(BIN)/distill train --task detect --model tiny --iters $(DEMO_DET_ITERS) \
		--batch-size $(DEMO_DET_BATCH) $(if $(DEMO_DET_LR),--lr $(DEMO_DET_LR)) --checkpoint-every $(DEMO_CHECKPOINT_EVERY) \
		--out $(DEMO)/detector $(call resume_if_started,detector) $(DATA_ARGS)

$(DEMO)/keypoints/metrics.json: $(DEMO)/data/train/annotations.json $(DEMO)/data/val/annotations.json
	$(TIMED) "step train-keypoints" $(BIN)/distill train --task keypoints --model tiny --iters $(DEMO_KP_ITERS) \
		--batch-size $(DEMO_KP_BATCH) $(if $(DEMO_KP_LR),--lr $(DEMO_KP_LR)) --checkpoint-every $(DEMO_CHECKPOINT_EVERY) \
		--out $(DEMO)/keypoints $(call resume_if_started,keypoints) $(DATA_ARGS)

# ---- export: the demo's teachers to ONNX (model card inside, parity check vs PyTorch) --
export: $(DEMO)/detector.onnx $(DEMO)/keypoints.onnx

$(DEMO)/%.onnx: $(DEMO)/%/metrics.json
	$(TIMED) "step export-$*" $(BIN)/distill export onnx --checkpoint $(DEMO)/$*/model.pt --out $@

clean:
	rm -rf $(VENV) runs
