# pipelines/baseline.mk — used by `make baseline` (included from pipelines/experiments.mk).
# The frozen model without prompts on the svFIQA folds (same data, translation and folds as
# `make svfiqa` with the same settings): zero-shot, one-shot and few-shot (SHOTS examples drawn
# with the seed from each fold's train set, rendered with the task template), accuracy per fold
# and mean ± std. Ends in $(BASELINE_DIR)/results.{md,json} and plots/comparison.png; the
# p-tuned svFIQA row is added when `make svfiqa` with the same settings has finished.

BASELINE_KINDS ?= zero one few
SHOTS ?= 5
BASELINE_EVAL_FLAGS = --normalize $(SVFIQA_NORM_MAP) --decode $(SVFIQA_DECODE) --labels $(SVFIQA_LABELS) --seed $(SEED) $(EVAL_ARGS)
BASELINE_SETTINGS := $(SVFIQA_DATA_SETTINGS) ; model=$(or $(MODEL),packaged) ; template=$(SVFIQA_TEMPLATE) ; \
  shots=$(SHOTS) ; eval=$(BASELINE_EVAL_FLAGS)
BASELINE_DIR := $(RESULTS)/baseline/$(_model_tag)-$(SVFIQA_LANG)-k$(SVFIQA_FOLDS)-$(call _hash,$(BASELINE_SETTINGS))

$(eval $(call WRITE_SETTINGS,$(BASELINE_DIR),$(BASELINE_SETTINGS)))
$(foreach kind,$(BASELINE_KINDS),$(eval $(call BASELINE_CHAIN,$(BASELINE_DIR),$(SVFIQA_DATA)/folds,$(SVFIQA_FOLD_NAMES),$(SVFIQA_TEMPLATE),$(kind),$(BASELINE_EVAL_FLAGS) $(if $(filter few,$(kind)),--shots $(SHOTS)))))

_baseline_label = $(if $(filter few,$(1)),$(SHOTS)-shot,$(1)-shot)
# `--existing` p-tuned svFIQA results join the table when they are there (never trained here)
BASELINE_PTUNED = $(wildcard $(SVFIQA_DIR)/summary.json)

$(BASELINE_DIR)/results.json: $(foreach k,$(BASELINE_KINDS),$(BASELINE_DIR)/$(k)/summary.json) $(BASELINE_PTUNED)
	$(PY) pipelines/compare.py -o $(BASELINE_DIR)/results --plot $(BASELINE_DIR)/plots/comparison.png \
	  $(foreach k,$(BASELINE_KINDS),"$(call _baseline_label,$(k))=$(BASELINE_DIR)/$(k)/summary.json") \
	  $(if $(BASELINE_PTUNED),"p-tuned=$(BASELINE_PTUNED)")

baseline: setup $(BASELINE_DIR)/results.json  ## 0/1/few-shot baselines of the frozen model on the svFIQA folds
	@cat $(BASELINE_DIR)/results.md
	@echo "baseline: results in $(BASELINE_DIR)/ (results.md, results.json, <kind>/summary.md, plots/*.png)"
