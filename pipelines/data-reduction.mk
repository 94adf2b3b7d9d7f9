# pipelines/data-reduction.mk — used by `make data-reduction` (included from pipelines/experiments.mk).
# svFIQA with less training data: each fold's train set cut to FRACTIONS of itself (the test
# sets stay the same folds as `make svfiqa`), SAMPLES random subsets per fraction below 100 %
# (`ptune kfold --train-fraction F --sample-seed S`), p-tuned and evaluated per fold and sample.
# 100 % reuses the `make svfiqa` runs of the same settings. Ends in $(REDUCTION_DIR)/summary.{md,json}
# and plots/reduction.png (accuracy vs training fraction, spread over samples).
# Measured (idle 2-core CPU, after the reduced svfiqa run in pipelines/svfiqa.mk): 1 min 54 s for
#   make data-reduction DATA_DIR=../shared/data TRANSLATE=none FOLDS=2 STEPS=20 \
#     FIQA_RAW=../shared/data/fiqa/raw/task1_headline_ABSA_train.json FRACTIONS="1 0.1" SAMPLES=1
# → 100 %: 65.5 ± 2.8 %, 10 % (22 sentences per fold): 65.5 ± 1.1 %.

FRACTIONS ?= 1 0.1 0.05 0.01
SAMPLES ?= 3
REDUCTION_SETTINGS := $(SVFIQA_SETTINGS) ; fractions=$(FRACTIONS) ; samples=$(SAMPLES)
REDUCTION_DIR := $(RESULTS)/data-reduction/$(_model_tag)-$(SVFIQA_LANG)-k$(SVFIQA_FOLDS)-s$(SVFIQA_STEPS)-$(call _hash,$(REDUCTION_SETTINGS))
_reduced_fracs = $(filter-out 1 1.0,$(FRACTIONS))
_samples = $(shell seq 1 $(SAMPLES))
# one folder per (fraction, sample): f0.1-s2
_reduced_sets = $(foreach f,$(_reduced_fracs),$(foreach s,$(_samples),f$(f)-s$(s)))

$(eval $(call WRITE_SETTINGS,$(REDUCTION_DIR),$(REDUCTION_SETTINGS)))

# $(call REDUCED_SET,NAME,FRACTION,SAMPLE)
define REDUCED_SET
$(SVFIQA_DATA)/reduced/$(1)/manifest.json: $(SVFIQA_DATA)/norm.jsonl
	$$(PTUNE) kfold $$< -o $$(@D) --k $(SVFIQA_FOLDS) --seed $$(SEED) $(SVFIQA_KFOLD_ARGS) --train-fraction $(2) --sample-seed $(3)

$(eval $(call FOLD_CHAIN,$(REDUCTION_DIR)/$(1),$(SVFIQA_DATA)/reduced/$(1),$(SVFIQA_FOLD_NAMES),$(SVFIQA_TEMPLATE),$(SVFIQA_TRAIN_FLAGS),$(SVFIQA_EVAL_FLAGS) --train-fraction $(2) --sample $(3),,accuracy))

$(REDUCTION_DIR)/$(1)/settings.txt: | $(REDUCTION_DIR)/settings.txt
	@mkdir -p $$(@D) && cp $(REDUCTION_DIR)/settings.txt $$@
endef
$(foreach f,$(_reduced_fracs),$(foreach s,$(_samples),$(eval $(call REDUCED_SET,f$(f)-s$(s),$(f),$(s)))))

REDUCTION_RESULTS = $(if $(filter 1 1.0,$(FRACTIONS)),$(foreach f,$(SVFIQA_FOLD_NAMES),$(SVFIQA_DIR)/eval/$(f).json)) \
  $(foreach r,$(_reduced_sets),$(foreach f,$(SVFIQA_FOLD_NAMES),$(REDUCTION_DIR)/$(r)/eval/$(f).json))

$(REDUCTION_DIR)/summary.json: $(REDUCTION_RESULTS) | $(REDUCTION_DIR)/settings.txt
	@mkdir -p $(REDUCTION_DIR)/plots
	$(PTUNE) report $^ -o $@ --markdown $(REDUCTION_DIR)/summary.md --reduction-plot $(REDUCTION_DIR)/plots/reduction.png --key accuracy

data-reduction: setup $(REDUCTION_DIR)/summary.json  ## svFIQA with 100/10/5/1 % of each fold's training data
	@cat $(REDUCTION_DIR)/summary.md
	@echo "data-reduction: results in $(REDUCTION_DIR)/ (summary.md, summary.json, plots/reduction.png)"
