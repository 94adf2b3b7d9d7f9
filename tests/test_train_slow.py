"""Slow: p-tune the real packaged SmolLM2-135M on Financial PhraseBank records on CPU."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ptune_cli.ptuning.table import load_prompt_table
from ptune_cli.training import TrainConfig, run_train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smollm2_loss_falls_on_financial_phrasebank(shared_data, tmp_path):
    src = shared_data / "financial_phrasebank" / "fpb_allagree_sentiment.jsonl"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    recs = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
    random.Random(0).shuffle(recs)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in recs[:48]), encoding="utf-8")
    out = tmp_path / "run"
    r = run_train(TrainConfig(train=str(train), output=str(out), template=str(REPO / "templates" / "en-sentiment.json"), max_steps=20))
    log = [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]
    first, last = sum(log[:3]) / 3, sum(log[-3:]) / 3
    # the frozen model starts far off (label token NLL ~13, EOS ~17). With the default lr (3e-3)
    # the first steps are spiky (12 steps ended at 0.9x the start); 20 steps measured 0.12x.
    assert last < 0.5 * first, log
    table = load_prompt_table(out)
    assert tuple(table.prompts["sentiment-task"].shape) == (10, 576)
    assert table.meta["base_model"] == "packaged:smollm2-135m"
    assert r.trainable_params < 0.05 * r.total_params
