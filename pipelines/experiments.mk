# pipelines/experiments.mk — included by the top-level Makefile (`-include pipelines/experiments.mk`).
# Make targets defined here: demo, svfiqa, svassistant, baseline, data-reduction, qa-demo, svsquad, assistant-demo, crosslingual, fetch-data.
# Each experiment's settings live in pipelines/<target>.mk; this file holds what they share:
# variables, the fold chain (kfold → train → eval → report) and the settings-keyed result paths.
#
# Every step writes a file and make's own dependency tracking reuses finished steps. Result
# folders are keyed by the settings that produced them (a readable prefix plus a hash of every
# setting, written to settings.txt inside), so runs with other settings never overwrite or mix:
#   $(RESULTS)/data/<name>-<hash>/          prepared, translated, normalized data and its folds
#   $(RESULTS)/<experiment>/<tag>-<hash>/   runs/, eval/, summary.{md,json}, plots/*.png
#
# Variables (override on the command line: make svfiqa MODEL=… FOLDS=2 STEPS=20):
#   MODEL            base causal LM: hub id, local dir or .gguf; empty = the packaged SmolLM2-135M
#   TRANSLATE        yes (translate EN→SV; fail if the model can't load) | none (use the English
#                    data with the English templates; for English-only models) | auto (demo:
#                    translate when the model is reachable, else the sample's own Swedish side)
#   TRANSLATE_MODEL  seq2seq model for `ptune translate` (hub id or local dir)
#   TRANSLATE_ARGS   extra `ptune translate` options (e.g. --engine ctranslate2 --batch-size 64)
#   DATA_DIR         folder with the raw source files (layout of ../shared/data; `make fetch-data`)
#   RESULTS          where everything is written (default: results)
#   FOLDS, STEPS, LR, BATCH, SEED, DECODE, TRAIN_ARGS, EVAL_ARGS: see each pipelines/<exp>.mk

PTUNE ?= $(BIN)/ptune
PY ?= $(BIN)/python
MODEL ?=
TRANSLATE_MODEL ?= Helsinki-NLP/opus-mt-en-sv
TRANSLATE_ARGS ?=
DATA_DIR ?= data
RESULTS ?= results
SEED ?= 42
TRAIN_ARGS ?=
EVAL_ARGS ?=

.PHONY: demo svfiqa svassistant baseline data-reduction qa-demo svsquad fetch-data

# a literal comma inside $(call …) arguments
, := ,

# --- helpers -----------------------------------------------------------------------------------
_model_arg = $(if $(MODEL),--model $(MODEL))
_model_tag = $(if $(MODEL),$(call _slug,$(notdir $(patsubst %/,%,$(MODEL)))),smollm2-135m)
# a path-safe slug and a short content hash of a settings string
_slug = $(shell printf '%s' '$(1)' | tr -c 'A-Za-z0-9._+-' '-' | cut -c1-40)
_hash = $(shell printf '%s' '$(strip $(1))' | sha1sum | cut -c1-8)
# fold folder names written by `ptune kfold --k N`: fold_00 … fold_{N-1}
_fold_names = $(shell seq -f 'fold_%02g' 0 $$(( $(1) - 1 )))
# the language side of a run: TRANSLATE=none keeps English data, templates and label maps
_lang = $(if $(filter none,$(1)),en,sv)

# settings.txt: what produced a result folder (written once, before its first step).
# SETTINGS is "key=value ; key=value …"; one setting per line in the file.
# $(call WRITE_SETTINGS,DIR,SETTINGS)
define WRITE_SETTINGS
$(1)/settings.txt:
	@mkdir -p $(1)
	@printf '%s\n' '$(strip $(2))' | sed 's/ *; */\n/g' > $$@.tmp && mv $$@.tmp $$@
endef

# Data preparation: raw source files → EN JSONL → (translate) → normalized labels → k folds.
# $(call DATA_CHAIN,DIR,RAW_FILES,PREPARE_ARGS,TRANSLATE,TRANSLATE_FLAGS,NORM_MAP,FOLDS,KFOLD_ARGS)
# NORM_MAP empty = no label normalization (intent/slot labels are class ids).
define DATA_CHAIN
$(1)/en.jsonl: $(2) | $(1)/settings.txt
	$$(PTUNE) prepare $(2) -o $$@ $(3)

$(1)/target.jsonl: $(1)/en.jsonl
ifeq ($(4),none)
	cp $$< $$@
else
	$$(PTUNE) translate $$< -o $$@ --model $$(TRANSLATE_MODEL) $(5) --report $(1)/translate_report.json $$(TRANSLATE_ARGS)
endif

$(1)/norm.jsonl: $(1)/target.jsonl
ifeq ($(6),)
	cp $$< $$@
else
	$$(PTUNE) normalize-labels $$< -o $$@ --map $(6)
endif

$(1)/folds/manifest.json: $(1)/norm.jsonl
	$$(PTUNE) kfold $$< -o $(1)/folds --k $(7) --seed $$(SEED) $(8)
endef

# Per-fold p-tuning and evaluation, then the report.
# $(call FOLD_CHAIN,DIR,FOLDS_DIR,FOLD_NAMES,TEMPLATE,TRAIN_FLAGS,EVAL_FLAGS,EXISTING_DIR,PLOT_KEYS)
# EXISTING_DIR: runs of an earlier task whose prompt tables this task is added to (continual
# learning, `ptune train --existing`); fold N of this task extends fold N of that one.
define FOLD_CHAIN
# finished runs and results are kept even though only the summary is asked for
.PRECIOUS: $(1)/runs/fold_%/prompt_table.safetensors $(1)/eval/fold_%.json

$(1)/runs/fold_%/prompt_table.safetensors: $(2)/manifest.json $(4) $(if $(7),$(7)/runs/fold_%/prompt_table.safetensors) | $(1)/settings.txt
	$$(PTUNE) train --train $(2)/fold_$$*/train.jsonl --val $(2)/fold_$$*/val.jsonl --template $(4) $$(_model_arg) -o $(1)/runs/fold_$$* --resume $(5) $(if $(7),--existing $(7)/runs/fold_$$*)

$(1)/eval/fold_%.json: $(1)/runs/fold_%/prompt_table.safetensors
	$$(PTUNE) eval --run $(1)/runs/fold_$$* --data $(2)/fold_$$*/test.jsonl -o $$@ --predictions-out $(1)/eval/fold_$$*.pred.jsonl $(6)

$(1)/summary.json: $(foreach f,$(3),$(1)/eval/$(f).json)
	@mkdir -p $(1)/plots
	$$(PTUNE) report $$^ -o $$@ --markdown $(1)/summary.md --plot $(1)/plots/folds.png $(foreach k,$(8),--key $(k))
endef

# Zero-, one- or few-shot baseline of the frozen model (no virtual tokens) on every fold's test
# set; shots are drawn from the fold's train set. KIND is zero, one or few.
# $(call BASELINE_CHAIN,DIR,FOLDS_DIR,FOLD_NAMES,TEMPLATE,KIND,EVAL_FLAGS)
define BASELINE_CHAIN
.PRECIOUS: $(1)/$(5)/fold_%.json

$(1)/$(5)/fold_%.json: $(2)/manifest.json $(4) | $(1)/settings.txt
	$$(PTUNE) eval --baseline $(5) --template $(4) --data $(2)/fold_$$*/test.jsonl $(if $(filter zero,$(5)),,--train $(2)/fold_$$*/train.jsonl) $$(_model_arg) -o $$@ --predictions-out $(1)/$(5)/fold_$$*.pred.jsonl $(6)

$(1)/$(5)/summary.json: $(foreach f,$(3),$(1)/$(5)/$(f).json)
	@mkdir -p $(1)/plots
	$$(PTUNE) report $$^ -o $$@ --markdown $(1)/$(5)/summary.md --plot $(1)/plots/$(5)-folds.png
endef

# --- raw data (fetched when online; DATA_DIR=… points at local copies when not) ----------------
FIQA_RAW ?= $(DATA_DIR)/fiqa/raw/task1_headline_ABSA_train.json $(DATA_DIR)/fiqa/raw/task1_post_ABSA_train.json
# the CV-fold concatenation in ../shared/data, else the repository's full annotated CSV
ASSISTANT_RAW ?= $(firstword $(wildcard $(DATA_DIR)/assistant/raw/nlu_eval_cv_testfolds.csv) $(DATA_DIR)/assistant/raw/NLU-Data-Home-Domain-Annotated-All.csv)
FIQA_URL ?= https://raw.githubusercontent.com/ashishsalunkhe/Aspect-based-Financial-Sentiment-Analysis/8f7d95c66158fb88ad2fbdc03d3cf22308fd12b8/dataset
# SQuAD v1.1 (the official dataset's site; CC BY-SA 4.0), for `make svsquad`
SQUAD_RAW ?= $(DATA_DIR)/squad/train-v1.1.json
SQUAD_URL ?= https://rajpurkar.github.io/SQuAD-explorer/dataset
ASSISTANT_URL ?= https://raw.githubusercontent.com/xliuhw/NLU-Evaluation-Data/f6071b496b17d71e6eb43f543af0707f4ff30557/AnnotatedData/NLU-Data-Home-Domain-Annotated-All.csv

fetch-data: $(FIQA_RAW) $(ASSISTANT_RAW) $(SQUAD_RAW)  ## download the public FiQA, NLU-Evaluation-Data and SQuAD v1.1 files into DATA_DIR

$(DATA_DIR)/fiqa/raw/%.json:
	@mkdir -p $(@D)
	@curl -fsSL --max-time 60 -o $@.tmp $(FIQA_URL)/$(notdir $@) && mv $@.tmp $@ \
	  || { rm -f $@.tmp; echo "could not fetch $(FIQA_URL)/$(notdir $@): offline? put the file there or pass DATA_DIR=<folder with fiqa/raw/>" >&2; exit 1; }

$(DATA_DIR)/assistant/raw/NLU-Data-Home-Domain-Annotated-All.csv:
	@mkdir -p $(@D)
	@curl -fsSL --max-time 120 -o $@.tmp $(ASSISTANT_URL) && mv $@.tmp $@ \
	  || { rm -f $@.tmp; echo "could not fetch $(ASSISTANT_URL): offline? put the file there or pass DATA_DIR=<folder with assistant/raw/>" >&2; exit 1; }

$(DATA_DIR)/squad/%.json:
	@mkdir -p $(@D)
	@curl -fsSL --max-time 300 -o $@.tmp $(SQUAD_URL)/$(notdir $@) && mv $@.tmp $@ \
	  || { rm -f $@.tmp; echo "could not fetch $(SQUAD_URL)/$(notdir $@): offline? put the file there or pass DATA_DIR=<folder with squad/>" >&2; exit 1; }

# --- the experiments ---------------------------------------------------------------------------
include pipelines/demo.mk
include pipelines/svfiqa.mk
include pipelines/svassistant.mk
include pipelines/baseline.mk
include pipelines/data-reduction.mk
include pipelines/qa.mk
include pipelines/assistant-demo.mk
