"""Training data loading: template fields and labels must be strings, every bad record listed."""

from __future__ import annotations

import json

import pytest

from ptune_cli.errors import UserError
from ptune_cli.ptuning.data import load_examples
from ptune_cli.ptuning.template import template_from_dict

SENT = {"taskname": "sentiment-task", "prompt_template": "<|VIRTUAL_PROMPT_0|> {sentence}:{label}",
        "total_virtual_tokens": 4, "virtual_token_splits": [4], "truncate_field": "sentence", "answer_field": "label"}


@pytest.fixture(scope="module")
def tok(tiny_lm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def test_null_number_list_labels_and_texts_are_refused_with_file_line(tmp_path, tok):
    # before: trained on str(): "None", "3", "['positiv']"
    recs = [{"sentence": "bra", "label": "positiv"}, {"sentence": "x", "label": None},
            {"sentence": 3, "label": "negativ"}, {"sentence": "y", "label": ["positiv"]}]
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_examples(p, {"sentiment-task": template_from_dict(SENT)}, tok, 64)
    msg = str(e.value)
    assert msg.startswith("--train: 3 bad record(s): ")
    for part in (f"{p}:2: field 'label': expected a string, got null",
                 f"{p}:3: field 'sentence': expected a string, got int",
                 f"{p}:4: field 'label': expected a string, got list"):
        assert part in msg


def test_nan_label_is_refused_at_read_time(tmp_path, tok):
    p = tmp_path / "train.jsonl"
    p.write_text('{"sentence": "bra", "label": "positiv"}\n{"sentence": "x", "label": NaN}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"train.jsonl:2: field 'label': NaN is not valid JSON"):
        load_examples(p, {"sentiment-task": template_from_dict(SENT)}, tok, 64)
