# The distillation loop as targets. Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo
# Extras installed into the local environment; add `trt` on a TensorRT box.
EXTRAS ?= train,export,dev

.PHONY: setup test demo export clean

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
DEMO_TRAIN_IMAGES ?= 300
DEMO_VAL_IMAGES ?= 100
DEMO_DET_ITERS ?= 800
DEMO_KP_ITERS ?= 900
DATA_ARGS = --train-json $(DEMO)/data/train/annotations.json --train-images $(DEMO)/data/train/images \
	--val-json $(DEMO)/data/val/annotations.json --val-images $(DEMO)/data/val/images

# --resume only where an interrupted run left a checkpoint behind.
resume_if_started = $(if $(wildcard $(DEMO)/$(1)/last.pt $(DEMO)/$(1)/model.pt),--resume)

demo: $(DEMO)/detector/metrics.json $(DEMO)/keypoints/metrics.json
	$(BIN)/distill eval --checkpoint $(DEMO)/keypoints/model.pt --detector $(DEMO)/detector/model.pt \
		--json $(DEMO)/data/val/annotations.json --images $(DEMO)/data/val/images
	$(BIN)/python -m trainer.summary $(DEMO)/detector $(DEMO)/keypoints

$(DEMO)/data/train/annotations.json: | $(STAMP)
	$(BIN)/distill synth --out $(DEMO)/data/train --images $(DEMO_TRAIN_IMAGES) --seed 1

$(DEMO)/data/val/annotations.json: | $(STAMP)
	$(BIN)/distill synth --out $(DEMO)/data/val --images $(DEMO_VAL_IMAGES) --seed 2

$(DEMO)/detector/metrics.json: $(DEMO)/data/train/annotations.json $(DEMO)/data/val/annotations.json
	$(BIN)/distill train --task detect --model tiny --iters $(DEMO_DET_ITERS) --batch-size 8 \
		--out $(DEMO)/detector $(call resume_if_started,detector) $(DATA_ARGS)

$(DEMO)/keypoints/metrics.json: $(DEMO)/data/train/annotations.json $(DEMO)/data/val/annotations.json
	$(BIN)/distill train --task keypoints --model tiny --iters $(DEMO_KP_ITERS) --batch-size 32 \
		--out $(DEMO)/keypoints $(call resume_if_started,keypoints) $(DATA_ARGS)

# ---- export: the demo's teachers to ONNX (model card inside, parity check vs PyTorch) --
export: $(DEMO)/detector.onnx $(DEMO)/keypoints.onnx

$(DEMO)/%.onnx: $(DEMO)/%/metrics.json
	$(BIN)/distill export onnx --checkpoint $(DEMO)/$*/model.pt --out $@

clean:
	rm -rf $(VENV) runs
