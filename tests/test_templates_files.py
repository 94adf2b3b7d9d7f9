"""Every shipped template in templates/*.json loads and names the command that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptune_cli.ptuning.template import load_templates

TEMPLATES = sorted((Path(__file__).resolve().parents[1] / "templates").glob("*.json"))


def test_templates_exist():
    names = {p.name for p in TEMPLATES}
    assert {"sv-sentiment.json", "en-sentiment.json", "sv-intent-slot.json", "en-intent-slot.json"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_file_loads(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert "ptune " in raw["_comment"], "the _comment must name the command that uses the file"
    tasks = load_templates(path)
    assert tasks and all(t.total_virtual_tokens > 0 for t in tasks.values())


def test_published_sentiment_template():
    t = load_templates(TEMPLATES[0].parent / "sv-sentiment.json")["sentiment-task"]
    assert t.prompt_template == "<|VIRTUAL_PROMPT_0|> {sentence}:{label}"
    assert (t.total_virtual_tokens, t.virtual_token_splits, t.answer_field) == (10, [10], "label")
