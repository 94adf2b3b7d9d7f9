# pipelines/svassistant.mk — used by `make svassistant` (included from pipelines/experiments.mk).
# svAssistant: NLU-Evaluation-Data intent/slot, translated EN→SV field-aware (intent names and
# slot types kept, slot values translated and projected), k folds (stratified by intent), and
# the intent_and_slot task ADDED to each svFIQA fold's prompt table by continual learning
# (`ptune train --existing <svfiqa run of the same fold>`; same FOLDS, MODEL, STEPS… as svfiqa).
# Evaluated as intent accuracy/P/R/F1, slot micro P/R/F1 and exact match; the sentiment task is
# re-scored from the new table to show it kept its accuracy (retention.md).
# Ends in $(SVASSIST_DIR)/summary.{md,json}, retention.{md,json} and plots/*.png.
# Wiring check on CPU (English, every 10th utterance of the CV CSV = 1,104, 2 folds, 20 steps,
# after the reduced svfiqa run): 7 min 36 s; sentiment after adding the task 65.46 ± 2.84 %,
# per fold identical to svfiqa alone; intent/slot 0 % after 20 steps (far too few to learn it).

SVASSIST_TRANSLATE := $(or $(TRANSLATE),yes)
SVASSIST_LANG := $(call _lang,$(SVASSIST_TRANSLATE))
# The intent/slot recipe of `make assistant-demo` (README "Intent and slot filling"): a deep
# prompt started from the listed intents and slot types (--init labels), lr 1e-2, 1,500 steps.
SVASSIST_STEPS := $(or $(STEPS),1500)
SVASSIST_RAW := $(ASSISTANT_RAW)
# the full annotated CSV that `make fetch-data` downloads has unlabeled rows: add --skip-bad to list and drop them
SVASSIST_PREPARE_ARGS ?= --source nlu-eval
# T=560 virtual positions; Gemma 3's 512-position sliding window takes T=400
SVASSIST_TEMPLATE ?= templates/intent-slot-prefix$(if $(findstring gemma,$(MODEL)),-gemma).json
SVASSIST_TRANSLATE_FLAGS ?= --fields utterance --label-format intent-slot
SVASSIST_TRAIN_FLAGS = --encoder prefix --init labels --max-steps $(SVASSIST_STEPS) --lr $(or $(LR),1e-2) --batch-size $(SVFIQA_BATCH) --seed $(SEED) $(TRAIN_ARGS)
SVASSIST_EVAL_FLAGS = --metric intent-slot $(EVAL_ARGS)

SVASSIST_DATA_SETTINGS := data=assistant ; raw=$(abspath $(SVASSIST_RAW)) ; prepare=$(SVASSIST_PREPARE_ARGS) ; translate=$(SVASSIST_TRANSLATE) ; \
  $(if $(filter none,$(SVASSIST_TRANSLATE)),,translate_model=$(TRANSLATE_MODEL) $(SVASSIST_TRANSLATE_FLAGS) $(TRANSLATE_ARGS) ;) \
  folds=$(SVFIQA_FOLDS) ; seed=$(SEED)
SVASSIST_DATA := $(RESULTS)/data/assistant-$(SVASSIST_LANG)-k$(SVFIQA_FOLDS)-$(call _hash,$(SVASSIST_DATA_SETTINGS))
SVASSIST_SETTINGS := $(SVASSIST_DATA_SETTINGS) ; existing=$(SVFIQA_DIR) ; template=$(SVASSIST_TEMPLATE) ; \
  train=$(SVASSIST_TRAIN_FLAGS) ; eval=$(SVASSIST_EVAL_FLAGS)
SVASSIST_DIR := $(RESULTS)/svassistant/$(_model_tag)-$(SVASSIST_LANG)-k$(SVFIQA_FOLDS)-s$(SVASSIST_STEPS)-$(call _hash,$(SVASSIST_SETTINGS))

$(eval $(call WRITE_SETTINGS,$(SVASSIST_DATA),$(SVASSIST_DATA_SETTINGS)))
$(eval $(call WRITE_SETTINGS,$(SVASSIST_DIR),$(SVASSIST_SETTINGS)))
$(eval $(call DATA_CHAIN,$(SVASSIST_DATA),$(SVASSIST_RAW),$(SVASSIST_PREPARE_ARGS),$(SVASSIST_TRANSLATE),$(SVASSIST_TRANSLATE_FLAGS),,$(SVFIQA_FOLDS),))
$(eval $(call FOLD_CHAIN,$(SVASSIST_DIR),$(SVASSIST_DATA)/folds,$(SVFIQA_FOLD_NAMES),$(SVASSIST_TEMPLATE),$(SVASSIST_TRAIN_FLAGS),$(SVASSIST_EVAL_FLAGS),$(SVFIQA_DIR),intent.accuracy slot.f1 exact_match))

# Retention: the sentiment task scored from the svAssistant table must equal svFIQA's own score.
.PRECIOUS: $(SVASSIST_DIR)/retention/fold_%.json
$(SVASSIST_DIR)/retention/fold_%.json: $(SVASSIST_DIR)/runs/fold_%/prompt_table.safetensors
	$(PTUNE) eval --run $(SVASSIST_DIR)/runs/fold_$* --task sentiment-task --data $(SVFIQA_DATA)/folds/fold_$*/test.jsonl -o $@ $(SVFIQA_EVAL_FLAGS)

$(SVASSIST_DIR)/retention/summary.json: $(foreach f,$(SVFIQA_FOLD_NAMES),$(SVASSIST_DIR)/retention/$(f).json)
	$(PTUNE) report $^ -o $@ --markdown $(SVASSIST_DIR)/retention/summary.md --key accuracy

$(SVASSIST_DIR)/retention.json: $(SVASSIST_DIR)/retention/summary.json $(SVFIQA_DIR)/summary.json
	$(PY) pipelines/compare.py -o $(SVASSIST_DIR)/retention --plot $(SVASSIST_DIR)/plots/retention.png \
	  "svFIQA alone=$(SVFIQA_DIR)/summary.json" "after adding intent/slot=$(SVASSIST_DIR)/retention/summary.json"

svassistant: setup $(SVASSIST_DIR)/summary.json $(SVASSIST_DIR)/retention.json  ## intent/slot added to the svFIQA prompt tables (continual learning)
	@cat $(SVASSIST_DIR)/summary.md
	@echo; echo "sentiment accuracy before and after adding intent/slot:"; cat $(SVASSIST_DIR)/retention.md
	@echo "svassistant: results in $(SVASSIST_DIR)/ (summary.md, retention.md, *.json, plots/*.png)"
