"""Records of different tasks in one batch decode exactly as one task at a time, on every family.

Four tasks: two input prompts (different T, limits, stop rules, candidates) and two deep prefixes
(different T), their records interleaved. The mixed batch stacks each task's head (prefix
keys/values, shared template text) along the batch dimension; sliding-window families split it
where padding would enter a window. Greedy texts must be equal; rank scores equal to tolerance.
"""

from __future__ import annotations

import pytest
import torch

from ptune_cli.inference import decode as predict
from ptune_cli.inference.setting import DecodeSetting
from ptune_cli.ptuning.template import TaskTemplate, encode_example
from tests.test_families import SENTENCES, _prompt, _random_prefix, bos, family  # noqa: F401 - fixtures
from tests.test_predict import TEMPLATE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INTENT = TaskTemplate("intent", "<|VIRTUAL_PROMPT_0|>Intent of {sentence}?{label}", 3, [3], "label", "sentence")
PREFIX_A = TaskTemplate("prefix-a", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 4, [4], "label", "sentence")
PREFIX_B = TaskTemplate("prefix-b", "<|VIRTUAL_PROMPT_0|>Say {sentence} ->{label}", 2, [2], "label", "sentence")


def _settings(model, tok) -> list[DecodeSetting]:
    return [
        DecodeSetting(TEMPLATE, _prompt(model, 5, seed=1), 10, False, ["positive", "negative", "neutral"]),
        DecodeSetting(INTENT, _prompt(model, 3, seed=3), 6, True, ["alarm", "coffee", "weather", "news"]),
        DecodeSetting(PREFIX_A, _random_prefix(model, tok, t=4, seed=2), 8, False, ["yes", "no"]),
        DecodeSetting(PREFIX_B, _random_prefix(model, tok, t=2, seed=5), 5, True, ["positiva", "negativ"]),
    ]


def _rows(tok, settings):
    """Every sentence for every task, the tasks interleaved record by record."""
    records, encs, row_settings = [], [], []
    for s in SENTENCES:
        for st in settings:
            rec = {"sentence": s, "label": ""}
            records.append(rec)
            encs.append(encode_example(st.template, rec, tok, include_answer=False))
            row_settings.append(st)
    return records, encs, row_settings


def _one_task_at_a_time(fn, records, encs, settings):
    out = [None] * len(encs)
    for st in dict.fromkeys(settings):
        idx = [i for i, s in enumerate(settings) if s is st]
        got = fn([records[i] for i in idx], [encs[i] for i in idx], [st] * len(idx))
        for k, i in enumerate(idx):
            out[i] = got[k]
    return out


@pytest.mark.parametrize("batch_size", [32, 3])
def test_mixed_generation_equals_one_task_at_a_time(family, bos, batch_size):  # noqa: F811 - test_families' fixtures
    _, _, model, tok = family
    settings = _settings(model, tok)
    records, encs, row_settings = _rows(tok, settings)

    def gen(_recs, e, s):
        return predict.generate_rows(model, tok, e, s, batch_size=batch_size)

    mixed = gen(records, encs, row_settings)
    alone = _one_task_at_a_time(gen, records, encs, row_settings)
    assert mixed == alone
    assert len(set(mixed)) > len(SENTENCES)  # predictions differ between records and tasks


@pytest.mark.parametrize("batch_size", [32, 3])
def test_mixed_rank_decoding_equals_one_task_at_a_time(family, bos, batch_size):  # noqa: F811 - test_families' fixtures
    _, _, model, tok = family
    settings = _settings(model, tok)
    records, encs, row_settings = _rows(tok, settings)

    def rank(recs, e, s):
        preds, scores = predict.rank_rows(model, tok, recs, e, s, batch_size=batch_size)
        return list(zip(preds, scores, strict=True))

    mixed = rank(records, encs, row_settings)
    alone = _one_task_at_a_time(rank, records, encs, row_settings)
    for (p, s), (p_ref, s_ref), st in zip(mixed, alone, row_settings, strict=True):
        assert len(s) == len(st.candidates)
        assert s == pytest.approx(s_ref, abs=2e-3)
        if max(s_ref) - sorted(s_ref)[-2] > 1e-2:  # no near-tie: the same label wins
            assert p == p_ref


def test_mixed_prefill_logits_equal_each_row_alone(family, bos):  # noqa: F811
    """The last logits of a mixed batch (no window split: one forward pass) equal each row's
    own, for the families without a sliding window."""
    from ptune_cli.inference.prefill import prefill, window_matters

    _, _, model, tok = family
    settings = _settings(model, tok)
    _, encs, row_settings = _rows(tok, settings)
    encs, row_settings = encs[:8], row_settings[:8]
    prompts = [s.prompt for s in row_settings]
    if window_matters(model, encs, prompts, 1):
        pytest.skip("sliding window shorter than the batch: covered by the split above")
    with torch.no_grad():
        got, *_ = prefill(model, encs, prompts, tok.pad_token_id)
        for b, (e, p) in enumerate(zip(encs, prompts, strict=True)):
            want, *_ = prefill(model, [e], [p], tok.pad_token_id)
            torch.testing.assert_close(got[b], want[0], atol=1e-4, rtol=1e-4)
