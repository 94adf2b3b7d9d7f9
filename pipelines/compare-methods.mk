# pipelines/compare-methods.mk — used by `make compare-methods` (included from pipelines/experiments.mk).
# Is p-tuning worth it? On the same folds, the same training records and the same step budget:
#   p-tuning     `ptune train --encoder lstm`, the demo's recipe (lr 3e-3, batch 8, text init)
#   p-tuning-v2  `ptune train --encoder prefix` (deep prompts, lr 1e-2 as in the README's recipe)
#   lora         PEFT LoRA r=8 (alpha 16, dropout 0.05) on q/k/v/o projections, lr 2e-4
#   full         the whole model with AdamW, lr 3e-5 (transformers)
#   zero-shot, few-shot   the frozen model (`ptune eval --baseline`, SHOTS examples)
# LoRA and full fine-tuning run in pipelines/compare_methods.py (not `ptune train` encoders: the
# prompt table stays the product's contract) with ptune's own batches, schedule, loss and
# decoding; every method's predictions are scored by `ptune eval --predictions`.
# Data: the demo's Swedish sentiment sample and its folds (pipelines/demo.mk, Gemma 3 270M; the
# English side with TRANSLATE=none) and the intent/slot sample pipelines/assistant/ (768
# records; CM_INTENT_RECORDS=N keeps its first N, it is shuffled) split into the same number of
# folds. CM_TEST_RECORDS=N scores every method on the first N test records of each fold (a
# reduced run: decoding is most of the time on CPU); CM_DATASETS=sentiment (or intent-slot) runs
# one data set. Ends in $(CM_DIR)/summary.json (one row per method and data set), results.md and
# plots/accuracy-vs-bytes.png. THREADS=N pins torch's threads (training, decoding and the matmul
# peak the GFLOP/s are compared with); empty: torch's default.
# Measured: see README, "Comparing methods".

CM_MODEL := $(DEMO_MODEL)
CM_LANG := $(DEMO_LANG)
CM_FOLDS := $(DEMO_FOLDS)
CM_STEPS := $(DEMO_STEPS)
CM_BATCH := $(DEMO_BATCH)
THREADS ?=
CM_INTENT_RECORDS ?=
CM_TEST_RECORDS ?=
LORA_LR ?= 2e-4
LORA_R ?= 8
FULL_LR ?= 3e-5
PREFIX_LR ?= 1e-2
CM_SHOTS := $(DEMO_SHOTS)
CM_INTENT_SRC ?= pipelines/assistant/intent_slot_$(CM_LANG).jsonl
CM_INTENT_TEMPLATE ?= templates/$(CM_LANG)-intent-slot.json
CM_ENV = $(if $(THREADS),OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS))
CM_SCRIPT = $(CM_ENV) $(PY) pipelines/compare_methods.py

# per data set: folds, template, p-tuning flags, decoding flags, scoring flags, table key
CM_SENT_FOLDS := $(DEMO_DIR)/data/folds
CM_SENT_PT := --max-steps $(CM_STEPS) --batch-size $(CM_BATCH) --init "text:$(DEMO_INIT)" --seed $(SEED) $(TRAIN_ARGS)
CM_SENT_DECODE := --decode $(DEMO_DECODE) --labels $(DEMO_LABELS)
CM_SENT_SCORE := --normalize $(DEMO_NORM_MAP)
CM_INTENT_PT := --max-steps $(CM_STEPS) --batch-size $(CM_BATCH) --seed $(SEED) $(TRAIN_ARGS)
CM_INTENT_DECODE := --decode generate
CM_INTENT_SCORE := --metric intent-slot

CM_INTENT_SETTINGS := data=intent-slot-sample ; src=$(CM_INTENT_SRC) ; records=$(or $(CM_INTENT_RECORDS),all) ; folds=$(CM_FOLDS) ; seed=$(SEED)
CM_INTENT_DATA := $(RESULTS)/data/intent-slot-sample-$(CM_LANG)-k$(CM_FOLDS)-$(call _hash,$(CM_INTENT_SETTINGS))
CM_SETTINGS := $(DEMO_SETTINGS) ; $(CM_INTENT_SETTINGS) ; intent_template=$(CM_INTENT_TEMPLATE) ; \
  p-tuning=--encoder lstm --lr $(DEMO_LR) ; p-tuning-v2=--encoder prefix --lr $(PREFIX_LR) ; \
  lora=r $(LORA_R) lr $(LORA_LR) ; full=lr $(FULL_LR) ; test_records=$(or $(CM_TEST_RECORDS),all) ; steps=$(CM_STEPS) ; batch=$(CM_BATCH) ; threads=$(or $(THREADS),default)
CM_DIR := $(RESULTS)/compare-methods/$(call _slug,$(notdir $(patsubst %/,%,$(subst packaged:,,$(CM_MODEL)))))-$(CM_LANG)-k$(CM_FOLDS)-s$(CM_STEPS)-$(call _hash,$(CM_SETTINGS))
CM_FOLD_NAMES := $(call _fold_names,$(CM_FOLDS))

$(eval $(call WRITE_SETTINGS,$(CM_INTENT_DATA),$(CM_INTENT_SETTINGS)))
$(eval $(call WRITE_SETTINGS,$(CM_DIR),$(CM_SETTINGS)))

$(CM_INTENT_DATA)/all.jsonl: $(CM_INTENT_SRC) | $(CM_INTENT_DATA)/settings.txt
	$(if $(CM_INTENT_RECORDS),head -n $(CM_INTENT_RECORDS) $< > $@.tmp && mv $@.tmp $@,cp $< $@)

$(CM_INTENT_DATA)/folds/manifest.json: $(CM_INTENT_DATA)/all.jsonl
	$(PTUNE) kfold $< -o $(CM_INTENT_DATA)/folds --k $(CM_FOLDS) --seed $(SEED)

# One method on one data set: per fold a stats file (training or baseline, measured), predictions,
# their score by `ptune eval --predictions`, then `ptune report`.
# $(call CM_METHOD,DIR,FOLDS_DIR,TEMPLATE,TRAIN_RECIPE,SCORE_FLAGS,KEY)
# TRAIN_RECIPE writes $(1)/stats/fold_$$*.json and $(1)/pred/fold_$$*.jsonl.
define CM_METHOD
.PRECIOUS: $(1)/stats/fold_%.json $(1)/eval/fold_%.json

$(1)/stats/fold_%.json: $(2)/manifest.json $(patsubst %/,%,$(dir $(1)))/test/fold_%/test.jsonl $(3) | $(CM_DIR)/settings.txt
	@mkdir -p $(1)/stats $(1)/pred
	$(4)

$(1)/eval/fold_%.json: $(1)/stats/fold_%.json
	$$(PTUNE) eval --predictions $(1)/pred/fold_$$*.jsonl --data $(patsubst %/,%,$(dir $(1)))/test/fold_$$*/test.jsonl -o $$@ --train-fraction 1 $(5)

$(1)/summary.json: $(foreach f,$(CM_FOLD_NAMES),$(1)/eval/$(f).json)
	$$(PTUNE) report $$^ -o $$@ --markdown $(1)/summary.md --key $(6)
endef

# $(call CM_PTUNE,DIR,FOLDS_DIR,TEMPLATE,TRAIN_FLAGS,DECODE_FLAGS): ptune train (measured), ptune eval --run
CM_PTUNE = $(CM_SCRIPT) measure --stats $(1)/stats/fold_$$*.json --run $(1)/runs/fold_$$* -- \
	  $$(PTUNE) train --train $(2)/fold_$$*/train.jsonl --val $(2)/fold_$$*/val.jsonl --template $(3) --model $(CM_MODEL) \
	  -o $(1)/runs/fold_$$* --resume $(4) && \
	$(CM_ENV) $$(PTUNE) eval --run $(1)/runs/fold_$$* --data $(patsubst %/,%,$(dir $(1)))/test/fold_$$*/test.jsonl -o $(1)/pred/fold_$$*.run.json \
	  --predictions-out $(1)/pred/fold_$$*.jsonl $(5)
# $(call CM_FINETUNE,DIR,FOLDS_DIR,TEMPLATE,METHOD,LR,DECODE_FLAGS)
CM_FINETUNE = $(CM_SCRIPT) finetune --method $(4) --lr $(5) --model $(CM_MODEL) --template $(3) \
	  --train $(2)/fold_$$*/train.jsonl --test $(patsubst %/,%,$(dir $(1)))/test/fold_$$*/test.jsonl --predictions-out $(1)/pred/fold_$$*.jsonl \
	  --stats $(1)/stats/fold_$$*.json --steps $(CM_STEPS) --batch-size $(CM_BATCH) --seed $(SEED) --lora-r $(LORA_R) \
	  $(6)
# $(call CM_BASELINE,DIR,FOLDS_DIR,TEMPLATE,KIND,DECODE_FLAGS)
CM_BASELINE = $(CM_SCRIPT) measure --stats $(1)/stats/fold_$$*.json \
	  $(if $(filter few,$(4)),--template $(3) --train $(2)/fold_$$*/train.jsonl --shots $(CM_SHOTS) --seed $(SEED)) -- \
	  $$(PTUNE) eval --baseline $(4) --template $(3) --data $(patsubst %/,%,$(dir $(1)))/test/fold_$$*/test.jsonl --model $(CM_MODEL) \
	  $(if $(filter few,$(4)),--train $(2)/fold_$$*/train.jsonl --shots $(CM_SHOTS) --seed $(SEED)) \
	  -o $(1)/pred/fold_$$*.run.json --predictions-out $(1)/pred/fold_$$*.jsonl $(5)

# $(call CM_DATASET,NAME,FOLDS_DIR,TEMPLATE,PT_FLAGS,DECODE_FLAGS,SCORE_FLAGS,KEY)
# Every method reads the same test file per fold: the fold's, or its first CM_TEST_RECORDS.
define CM_DATASET
.PRECIOUS: $(CM_DIR)/$(1)/test/fold_%/test.jsonl
$(CM_DIR)/$(1)/test/fold_%/test.jsonl: $(2)/manifest.json
	@mkdir -p $$(@D)
	$(if $(CM_TEST_RECORDS),head -n $(CM_TEST_RECORDS) $(2)/fold_$$*/test.jsonl > $$@.tmp && mv $$@.tmp $$@,cp $(2)/fold_$$*/test.jsonl $$@)

$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/p-tuning,$(2),$(3),$(call CM_PTUNE,$(CM_DIR)/$(1)/p-tuning,$(2),$(3),--encoder lstm --lr $(DEMO_LR) $(4),$(5)),$(6),$(7)))
$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/p-tuning-v2,$(2),$(3),$(call CM_PTUNE,$(CM_DIR)/$(1)/p-tuning-v2,$(2),$(3),--encoder prefix --lr $(PREFIX_LR) $(4),$(5)),$(6),$(7)))
$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/lora,$(2),$(3),$(call CM_FINETUNE,$(CM_DIR)/$(1)/lora,$(2),$(3),lora,$(LORA_LR),$(5)),$(6),$(7)))
$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/full,$(2),$(3),$(call CM_FINETUNE,$(CM_DIR)/$(1)/full,$(2),$(3),full,$(FULL_LR),$(5)),$(6),$(7)))
$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/zero-shot,$(2),$(3),$(call CM_BASELINE,$(CM_DIR)/$(1)/zero-shot,$(2),$(3),zero,$(5)),$(6),$(7)))
$(eval $(call CM_METHOD,$(CM_DIR)/$(1)/few-shot,$(2),$(3),$(call CM_BASELINE,$(CM_DIR)/$(1)/few-shot,$(2),$(3),few,$(5)),$(6),$(7)))
endef

CM_DATASETS ?= sentiment intent-slot
CM_METHODS := p-tuning p-tuning-v2 lora full zero-shot few-shot
$(eval $(call CM_DATASET,sentiment,$(CM_SENT_FOLDS),$(DEMO_TEMPLATE),$(CM_SENT_PT),$(CM_SENT_DECODE),$(CM_SENT_SCORE),accuracy))
$(eval $(call CM_DATASET,intent-slot,$(CM_INTENT_DATA)/folds,$(CM_INTENT_TEMPLATE),$(CM_INTENT_PT),$(CM_INTENT_DECODE),$(CM_INTENT_SCORE),intent.accuracy))
_cm_key = $(if $(filter sentiment,$(1)),accuracy,intent.accuracy)

$(CM_DIR)/peak.json: | $(CM_DIR)/settings.txt
	$(CM_SCRIPT) peak -o $@

$(CM_DIR)/summary.json: $(CM_DIR)/peak.json $(foreach d,$(CM_DATASETS),$(foreach m,$(CM_METHODS),$(CM_DIR)/$(d)/$(m)/summary.json))
	@mkdir -p $(CM_DIR)/plots
	$(PY) pipelines/compare_methods.py summarize -o $@ --markdown $(CM_DIR)/results.md \
	  --plot $(CM_DIR)/plots/accuracy-vs-bytes.png --peak $(CM_DIR)/peak.json \
	  $(foreach d,$(CM_DATASETS),$(foreach m,$(CM_METHODS),"$(m):$(d):$(call _cm_key,$(d))=$(CM_DIR)/$(d)/$(m)/summary.json"))


compare-methods: setup  ## p-tuning vs P-tuning v2 vs LoRA vs full fine-tuning vs zero/few-shot, same folds and steps
	@start=$$(date +%s); $(MAKE) --no-print-directory $(CM_DIR)/summary.json && \
	echo "compare-methods: finished in $$(( $$(date +%s) - start )) s"
	@cat $(CM_DIR)/results.md
	@echo "compare-methods: results in $(CM_DIR)/ (summary.json, results.md, <data>/<method>/summary.md, plots/accuracy-vs-bytes.png)"
