# pipelines/assistant-demo.mk — used by `make assistant-demo` (included from pipelines/experiments.mk).
# The published study's whole story in one target, offline: a sentiment task is p-tuned, then
# intent and slot filling is ADDED to the same prompt table by continual learning (`ptune train
# --existing`), sentiment is re-scored from the new table (its predictions must be byte-identical:
# retention), and intent/slot is scored against the frozen model's zero-shot and few-shot.
#   English (default): SmolLM2-135M.   ASSIST_LANG=sv: Gemma 3 270M, Swedish test records.
# Data: sentiment trains on the demo's tuning sample (pipelines/demo/dev/, 180 sentences) and is
# scored on the demo's held-out 360; intent/slot trains on NLU-Evaluation-Data records
# (ASSIST_TRAIN, prepared JSONL in the layout of ../shared/data: DATA_DIR=…) and is scored on the
# project's own held-out sample pipelines/assistant/intent_slot_$(ASSIST_LANG).jsonl (768
# utterances written for the project, 12 per intent: not from the training data's distribution
# of speakers). Swedish training adds the Swedish tuning sample pipelines/assistant/dev/ to the
# English records (the "en+sv" row of `make crosslingual`).
# The intent/slot recipe (README "Intent and slot filling"): a deep prompt (--encoder prefix),
# T=560 (Gemma: 400, its sliding window), started from the model's own keys/values of the list of
# known intents and slot types (--init labels), lr 1e-2 cosine, batch 8; decoded with structured
# decoding (intents and slot types from the run, slot values copied from the utterance).
# Results: $(ASSIST_DIR)/results.{md,json}, plots/*.png. Override like any experiment:
#   make assistant-demo ASSIST_STEPS=200   (a quick wiring check)

ASSIST_LANG ?= en
ASSIST_MODEL := $(or $(MODEL),$(if $(filter sv,$(ASSIST_LANG)),packaged:gemma3-270m,packaged:smollm2-135m))
# prepared NLU-Evaluation-Data training records: DATA_DIR's, else the reproduction environment's ../shared/data
ASSIST_TRAIN ?= $(firstword $(wildcard $(DATA_DIR)/assistant/assistant_train.jsonl ../shared/data/assistant/assistant_train.jsonl) $(DATA_DIR)/assistant/assistant_train.jsonl)
ASSIST_TEST ?= pipelines/assistant/intent_slot_$(ASSIST_LANG).jsonl
ASSIST_SV_TRAIN ?= pipelines/assistant/dev/intent_slot_sv.jsonl
ASSIST_STEPS ?= $(if $(filter sv,$(ASSIST_LANG)),400,1500)
ASSIST_TEMPLATE ?= $(if $(filter sv,$(ASSIST_LANG)),templates/intent-slot-prefix-gemma.json,templates/intent-slot-prefix.json)
ASSIST_SHOTS ?= 5
ASSIST_THREADS ?= 2
ASSIST_TRAIN_FLAGS = --encoder prefix --init labels --lr 1e-2 --batch-size 8 --max-steps $(ASSIST_STEPS) --seed $(SEED) --threads $(ASSIST_THREADS) $(TRAIN_ARGS)
ASSIST_EVAL_FLAGS = --metric intent-slot --threads $(ASSIST_THREADS) $(EVAL_ARGS)
# sentiment: the demo's recipe for the language (pipelines/demo.mk)
ASSIST_SENT_TEMPLATE := $(if $(filter sv,$(ASSIST_LANG)),templates/sv-sentiment-demo.json,templates/en-sentiment.json)
ASSIST_SENT_TRAIN_FLAGS = --lr $(if $(filter sv,$(ASSIST_LANG)),3e-3 --max-steps 100 --init "text:Är nyheten positiv$(,) negativ eller neutral?",1e-3 --max-steps 60 --init "text:Sentiment positive$(,) negative or neutral?") --batch-size 8 --seed $(SEED) --threads $(ASSIST_THREADS)
ASSIST_SENT_EVAL_FLAGS = --decode rank --normalize $(ASSIST_LANG)-sentiment --threads $(ASSIST_THREADS) \
  --labels $(if $(filter sv,$(ASSIST_LANG)),positiv$(,)negativ$(,)neutral,positive$(,)negative$(,)neutral)

ASSIST_SETTINGS := data=$(abspath $(ASSIST_TRAIN)) ; test=$(ASSIST_TEST) ; lang=$(ASSIST_LANG) ; model=$(ASSIST_MODEL) ; \
  template=$(ASSIST_TEMPLATE) ; train=$(ASSIST_TRAIN_FLAGS) ; eval=$(ASSIST_EVAL_FLAGS) ; shots=$(ASSIST_SHOTS) ; \
  sentiment=$(ASSIST_SENT_TEMPLATE) $(ASSIST_SENT_TRAIN_FLAGS)
ASSIST_DIR := $(RESULTS)/assistant-demo/$(call _slug,$(subst packaged:,,$(ASSIST_MODEL)))-$(ASSIST_LANG)-s$(ASSIST_STEPS)-$(call _hash,$(ASSIST_SETTINGS))
$(eval $(call WRITE_SETTINGS,$(ASSIST_DIR),$(ASSIST_SETTINGS)))
$(ASSIST_DIR)/%: MODEL = $(ASSIST_MODEL)

$(ASSIST_TRAIN):
	@echo "assistant-demo: no NLU-Evaluation-Data training records at $@: pass DATA_DIR=<folder with assistant/assistant_train.jsonl> or ASSIST_TRAIN=<file> (\`ptune prepare --source nlu-eval\` writes one from the public CSV, \`make fetch-data\`)" >&2; exit 1

# 1. sentiment, trained on the demo's tuning sample, scored on its held-out sample
$(ASSIST_DIR)/sentiment/run/prompt_table.json: pipelines/demo/dev/sentiment_$(ASSIST_LANG).jsonl | $(ASSIST_DIR)/settings.txt
	$(PTUNE) train --train $< --template $(ASSIST_SENT_TEMPLATE) --model $(ASSIST_MODEL) -o $(@D) --resume $(ASSIST_SENT_TRAIN_FLAGS)

$(ASSIST_DIR)/sentiment/before.json: $(ASSIST_DIR)/sentiment/run/prompt_table.json
	$(PTUNE) eval --run $(<D) --data pipelines/demo/sentiment_$(ASSIST_LANG).jsonl -o $@ --predictions-out $(@D)/before.pred.jsonl $(ASSIST_SENT_EVAL_FLAGS)

# 2. intent/slot added to the sentiment table (continual learning: sentiment's prompt kept byte for byte)
$(ASSIST_DIR)/data/train.jsonl: $(ASSIST_TRAIN) $(if $(filter sv,$(ASSIST_LANG)),$(ASSIST_SV_TRAIN)) | $(ASSIST_DIR)/settings.txt
	@mkdir -p $(@D)
	cat $^ > $@.tmp && mv $@.tmp $@

$(ASSIST_DIR)/assistant/run/prompt_table.json: $(ASSIST_DIR)/data/train.jsonl $(ASSIST_DIR)/sentiment/run/prompt_table.json $(ASSIST_TEMPLATE)
	$(PTUNE) train --train $< --template $(ASSIST_TEMPLATE) --existing $(ASSIST_DIR)/sentiment/run -o $(@D) --resume $(ASSIST_TRAIN_FLAGS)

$(ASSIST_DIR)/assistant/p-tuned.json: $(ASSIST_DIR)/assistant/run/prompt_table.json $(ASSIST_TEST)
	$(PTUNE) eval --run $(<D) --task intent_and_slot --data $(ASSIST_TEST) -o $@ --predictions-out $(@D)/p-tuned.pred.jsonl $(ASSIST_EVAL_FLAGS)

# 3. retention: sentiment re-scored from the table that now holds both tasks
$(ASSIST_DIR)/sentiment/after.json: $(ASSIST_DIR)/assistant/run/prompt_table.json $(ASSIST_DIR)/sentiment/before.json
	$(PTUNE) eval --run $(<D) --task sentiment-task --data pipelines/demo/sentiment_$(ASSIST_LANG).jsonl -o $@ --predictions-out $(@D)/after.pred.jsonl $(ASSIST_SENT_EVAL_FLAGS)

# 4. the frozen model: zero-shot and few-shot (shots drawn from the training records)
$(ASSIST_DIR)/assistant/zero-shot.json: $(ASSIST_TEST) $(ASSIST_TEMPLATE) | $(ASSIST_DIR)/settings.txt
	$(PTUNE) eval --baseline zero --template $(ASSIST_TEMPLATE) --model $(ASSIST_MODEL) --data $(ASSIST_TEST) -o $@ --predictions-out $(@D)/zero-shot.pred.jsonl $(ASSIST_EVAL_FLAGS)

$(ASSIST_DIR)/assistant/$(ASSIST_SHOTS)-shot.json: $(ASSIST_TEST) $(ASSIST_TEMPLATE) $(ASSIST_DIR)/data/train.jsonl
	$(PTUNE) eval --baseline few --shots $(ASSIST_SHOTS) --train $(ASSIST_DIR)/data/train.jsonl --seed $(SEED) --template $(ASSIST_TEMPLATE) --model $(ASSIST_MODEL) --data $(ASSIST_TEST) -o $@ --predictions-out $(@D)/$(ASSIST_SHOTS)-shot.pred.jsonl $(ASSIST_EVAL_FLAGS)

$(ASSIST_DIR)/results.json: $(ASSIST_DIR)/sentiment/before.json $(ASSIST_DIR)/sentiment/after.json $(ASSIST_DIR)/assistant/p-tuned.json \
    $(ASSIST_DIR)/assistant/zero-shot.json $(ASSIST_DIR)/assistant/$(ASSIST_SHOTS)-shot.json
	$(PY) pipelines/assistant_demo_table.py $(ASSIST_DIR) --shots $(ASSIST_SHOTS)

assistant-demo: setup  ## sentiment, then intent/slot added by continual learning (English SmolLM2; ASSIST_LANG=sv: Gemma 3), vs zero/few-shot
	@start=$$(date +%s); $(MAKE) --no-print-directory $(ASSIST_DIR)/results.json && \
	echo "assistant-demo: finished in $$(( $$(date +%s) - start )) s"
	@cat $(ASSIST_DIR)/results.md
	@echo "assistant-demo: results in $(ASSIST_DIR)/ (results.md, results.json, settings.txt); plots in $(ASSIST_DIR)/plots/"

# Three ways to get Swedish prompts (pipelines/crosslingual.py): trained on Swedish, on English
# only (applied to Swedish), on both; for sentiment (the demo sample, k=3) and intent/slot.
XL_DIR := $(RESULTS)/crosslingual/$(call _slug,$(subst packaged:,,$(or $(MODEL),packaged:gemma3-270m)))
crosslingual: setup $(ASSIST_TRAIN)  ## Swedish prompts three ways (sv / en only / both), sentiment and intent/slot, Gemma 3 270M
	$(PY) pipelines/crosslingual.py sentiment -o $(XL_DIR)/sentiment $(if $(MODEL),--model $(MODEL)) $(if $(STEPS),--steps $(STEPS))
	$(PY) pipelines/crosslingual.py intent-slot -o $(XL_DIR)/intent-slot --en-train $(ASSIST_TRAIN) $(if $(MODEL),--model $(MODEL)) $(if $(XL_STEPS),--steps $(XL_STEPS))
