"""Scoring: classification accuracy and intent/slot P/R/F1, as defined in README.md (`ptune eval`, "Metrics").

The definitions, in short:

* Classification: the text up to the first newline, stripped, lowercased, trailing punctuation
  removed, then mapped through the label normalization (if any); gold goes through the same.
* Intent/slot: :func:`ptune_cli.labels.parse_intent_slot`; intent accuracy / precision / recall,
  slot micro P/R/F1 over multisets of ``(type, value)`` pairs, exact match.
* SQuAD (``squad``): exact match and token F1 of the official SQuAD v1.1 evaluation script
  (lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace; the
  maximum over a question's gold answers; F1 is 0 when no token is shared, even for two empty
  answers). ``lang="sv"`` drops the Swedish articles en/ett/den/det/de instead (our extension).
  A newline in a prediction is whitespace, as in the official script (stopping generation at
  a newline is a decoding choice, ``--stop-at-newline``, not the metric's).
* Any 0/0 is 0.0.

Every scorer returns a plain dict (the results JSON) with ``per_label`` rows
``{label, precision, recall, f1, support}`` (intent/slot rows also carry ``kind``).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from ptune_cli.errors import UserError
from ptune_cli.evaluate.config import EvalConfig
from ptune_cli.labels import LabelMap, label_key, looks_like_intent_slot, parse_intent_slot
from ptune_cli.options import choices

METRICS = choices(EvalConfig, "metric")  # declared once, on EvalConfig.metric


def ratio(num: float, den: float) -> float:
    """``num / den`` with 0/0 (and x/0) reported as 0.0."""
    return num / den if den else 0.0


def f1(p: float, r: float) -> float:
    """Harmonic mean of precision and recall (0.0 when both are 0)."""
    return ratio(2 * p * r, p + r)


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p, r = ratio(tp, n_pred), ratio(tp, n_gold)
    return {"precision": p, "recall": r, "f1": f1(p, r)}


def class_key(text: str | None, label_map: LabelMap | None = None) -> str:
    """The comparison form of a class label or generated text (see module docstring)."""
    first_line = (text or "").split("\n", 1)[0]
    key = label_key(first_line)
    return label_map.normalize(key) if label_map is not None else key


def resolve_metric(metric: str, golds: Sequence[str], qa: bool = False) -> str:
    """``auto`` -> ``squad`` for QA records (``qa``, see :func:`is_qa`), ``intent-slot`` when
    any gold label has ``Intent:``, else ``accuracy``."""
    if metric not in METRICS:
        raise UserError(f"--metric: unknown metric '{metric}' (choose from {', '.join(METRICS)})")
    if metric != "auto":
        return metric
    if qa:
        return "squad"
    return "intent-slot" if any(looks_like_intent_slot(g) for g in golds) else "accuracy"


# --- SQuAD ------------------------------------------------------------------------------------

ARTICLES = {"en": ("a", "an", "the"), "sv": ("en", "ett", "den", "det", "de")}
_PUNCT = set(string.punctuation)  # ASCII only, as in the official script


def is_qa(records: Sequence[dict]) -> bool:
    """QA records (``ptune prepare --source squad``): they carry ``answers`` (checked later, so
    a malformed ``answers`` is named as such, not taken for a missing ``label``)."""
    return any("answers" in r for r in records)


def normalize_answer(text: str, lang: str = "en") -> str:
    """The official SQuAD v1.1 ``normalize_answer`` (articles of ``lang``)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(" + "|".join(ARTICLES[lang]) + r")\b", " ", text)
    return " ".join(text.split())


def squad_f1(pred: str, gold: str, lang: str = "en") -> float:
    """Token F1 of one prediction against one gold answer (official v1.1 definition)."""
    p, g = normalize_answer(pred, lang).split(), normalize_answer(gold, lang).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(golds: Sequence[str], pred: str, lang: str = "en") -> tuple[float, float]:
    """(exact match, F1) of one prediction: the maximum over the gold answers."""
    pred = pred or ""
    em = max(float(normalize_answer(pred, lang) == normalize_answer(g, lang)) for g in golds)
    return em, max(squad_f1(pred, g, lang) for g in golds)


def score_squad(golds: Sequence[Sequence[str] | str], preds: Sequence[str], lang: str = "en") -> dict:
    """Exact match and F1 as fractions, averaged over questions (a gold may list several answers)."""
    _check_lengths(golds, preds)
    if lang not in ARTICLES:
        raise UserError(f"--lang: no article list for '{lang}' (known: {', '.join(ARTICLES)})")
    if any(not (isinstance(g, str) or g) for g in golds):
        raise UserError("a question has no gold answer (SQuAD records need 'answers' with at least one)")
    pairs = [squad_scores([g] if isinstance(g, str) else list(g), p, lang) for g, p in zip(golds, preds, strict=True)]
    n = len(pairs)
    return {
        "metric": "squad",
        "n": n,
        "exact_match": ratio(sum(em for em, _ in pairs), n),
        "f1": ratio(sum(f for _, f in pairs), n),
        "lang": lang,
        "counts": {"exact": int(sum(em for em, _ in pairs))},
        "per_label": [],
    }


def _check_lengths(golds: Sequence, preds: Sequence) -> None:
    if len(golds) != len(preds):
        raise UserError(
            f"{len(preds)} predictions for {len(golds)} gold labels (score files of equal length)"
        )


def score_accuracy(
    golds: Sequence[str], preds: Sequence[str], label_map: LabelMap | None = None
) -> dict:
    """Classification accuracy with per-label precision/recall/F1 (rows for the gold labels).

    ``out_of_set`` counts predictions that match none of the gold labels.
    """
    _check_lengths(golds, preds)
    g = [class_key(x, label_map) for x in golds]
    p = [class_key(x, label_map) for x in preds]
    correct = sum(a == b for a, b in zip(g, p, strict=True))
    gold_n, pred_n = Counter(g), Counter(p)
    tp = Counter(a for a, b in zip(g, p, strict=True) if a == b)
    rows = [
        {"label": lab, **_prf(tp[lab], pred_n[lab], gold_n[lab]), "support": gold_n[lab]}
        for lab in sorted(gold_n)
    ]
    return {
        "metric": "accuracy",
        "n": len(g),
        "accuracy": ratio(correct, len(g)),
        "correct": correct,
        "macro_f1": ratio(sum(r["f1"] for r in rows), len(rows)),
        "out_of_set": sum(n for lab, n in pred_n.items() if lab not in gold_n),
        "per_label": rows,
    }


def score_intent_slot(golds: Sequence[str], preds: Sequence[str]) -> dict:
    """Intent accuracy/P/R/F1, slot micro P/R/F1 over (type, value) multisets, exact match.

    An intent counts as correct when the gold has an intent and the prediction's equals it.
    Per-label rows: one per gold intent (``kind: intent``) and per gold slot type (``kind:
    slot``), sorted by name; predicted names no gold label has share one ``(other)`` row of
    each kind (:func:`_kind_rows`).
    """
    _check_lengths(golds, preds)
    correct = exact = n_pred_int = n_gold_int = 0
    slot_tp = slot_pred = slot_gold = 0
    int_tp, int_pred, int_gold = Counter(), Counter(), Counter()
    typ_tp, typ_pred, typ_gold = Counter(), Counter(), Counter()
    for gold_text, pred_text in zip(golds, preds, strict=True):
        gold, pred = parse_intent_slot(gold_text), parse_intent_slot(pred_text)
        ok = gold.intent is not None and pred.intent == gold.intent
        correct += ok
        n_pred_int += pred.intent is not None
        n_gold_int += gold.intent is not None
        if pred.intent is not None:
            int_pred[pred.intent] += 1
        if gold.intent is not None:
            int_gold[gold.intent] += 1
            int_tp[gold.intent] += ok
        gs, ps = gold.slot_counter, pred.slot_counter
        inter = gs & ps  # multiset intersection
        slot_tp += sum(inter.values())
        slot_pred += sum(ps.values())
        slot_gold += sum(gs.values())
        for (stype, _), k in inter.items():
            typ_tp[stype] += k
        for (stype, _), k in ps.items():
            typ_pred[stype] += k
        for (stype, _), k in gs.items():
            typ_gold[stype] += k
        exact += ok and gs == ps
    n = len(golds)
    intent = {"accuracy": ratio(correct, n), **_prf(correct, n_pred_int, n_gold_int)}
    # sentiment labels under --metric intent-slot score 0 everywhere: say why, not just 0
    warnings = ["no gold label has an 'Intent:' part: every intent/slot score is 0 (is --metric intent-slot "
                "right for this data?)"] if n and not n_gold_int else []
    rows = _kind_rows("intent", int_tp, int_pred, int_gold) + _kind_rows("slot", typ_tp, typ_pred, typ_gold)
    return {
        "metric": "intent-slot",
        "n": n,
        "intent": intent,
        "slot": _prf(slot_tp, slot_pred, slot_gold),
        "exact_match": ratio(exact, n),
        "counts": {
            "intent_correct": correct, "intent_predicted": n_pred_int, "intent_gold": n_gold_int,
            "slot_tp": slot_tp, "slot_predicted": slot_pred, "slot_gold": slot_gold,
            "exact": exact,
        },
        "per_label": rows,
        **({"warnings": warnings} if warnings else {}),
    }


OTHER = "(other)"  # the row of every predicted name that no gold label has


def _kind_rows(kind: str, tp: Counter, pred: Counter, gold: Counter) -> list[dict]:
    """One row per gold name, sorted; predicted names no gold label has (an invented intent,
    ``brew_coffee``) share one ``(other)`` row last, with how often each was predicted: a
    model that invents names must not grow the table by a row per name."""
    rows = [{"kind": kind, "label": lab, **_prf(tp[lab], pred[lab], gold[lab]), "support": gold[lab]}
            for lab in sorted(gold)]
    invented = Counter({lab: n for lab, n in pred.items() if lab not in gold})
    if invented:
        rows.append({"kind": kind, "label": OTHER, **_prf(0, invented.total(), 0), "support": 0,
                     "predicted": invented.total(), "names": dict(invented.most_common())})
    return rows


def score(
    golds: Sequence[str],
    preds: Sequence[str],
    metric: str = "auto",
    label_map: LabelMap | None = None,
    lang: str = "en",
) -> dict:
    """Score predictions against gold labels with ``metric`` (auto / accuracy / intent-slot /
    squad; auto picks squad when a gold is a list of answers)."""
    metric = resolve_metric(metric, golds, qa=any(isinstance(g, list) for g in golds))
    if metric == "squad":
        return score_squad(golds, preds, lang)
    golds = [g[0] if isinstance(g, list) and g else g for g in golds]  # QA golds under another metric
    if metric == "accuracy":
        return score_accuracy(golds, preds, label_map)
    return score_intent_slot(golds, preds)


DEFAULT_PLOT_KEYS = {"accuracy": ["accuracy"], "intent-slot": ["intent.accuracy", "slot.f1", "exact_match"],
                     "squad": ["exact_match", "f1"]}
PRIMARY_KEY = {"accuracy": "accuracy", "intent-slot": "slot.f1", "squad": "f1"}
_KEY_TITLES = {
    "accuracy": "accuracy", "macro_f1": "macro F1", "exact_match": "exact match", "f1": "F1",
    "intent.accuracy": "intent acc", "intent.precision": "intent P", "intent.recall": "intent R",
    "intent.f1": "intent F1", "slot.precision": "slot P", "slot.recall": "slot R", "slot.f1": "slot F1",
}


def key_title(key: str) -> str:
    """A results key as a table or plot shows it (``slot.f1`` -> ``slot F1``)."""
    return _KEY_TITLES.get(key, key)


def headline(results: dict) -> dict[str, float]:
    """The headline numbers of a results dict, flat (``intent.f1`` style keys)."""
    if results.get("metric") == "accuracy":  # ptune report refuses results without macro_f1
        return {"accuracy": results["accuracy"], "macro_f1": results["macro_f1"]}
    if results.get("metric") == "squad":
        return {"exact_match": results["exact_match"], "f1": results["f1"]}
    out = {f"intent.{k}": results["intent"][k] for k in ("accuracy", "precision", "recall", "f1")}
    out.update({f"slot.{k}": results["slot"][k] for k in ("precision", "recall", "f1")})
    out["exact_match"] = results["exact_match"]
    return out
