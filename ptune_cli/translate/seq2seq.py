"""What both translation engines share: the tokenizer (with the language codes multilingual
models want), the model's identity for the cache, and length-sorted batching.

Both :mod:`.engines` (transformers) and :mod:`.ct2` (CTranslate2) import this; neither imports
the other (``engines.load_engine`` picks one lazily).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.models import hub_source
from ptune_cli.translate.config import TranslateConfig

# Target-language codes multilingual models expect when the user gives a short code.
NLLB_CODES = {"sv": "swe_Latn", "en": "eng_Latn", "fi": "fin_Latn", "da": "dan_Latn",
              "nb": "nob_Latn", "no": "nob_Latn", "de": "deu_Latn", "is": "isl_Latn"}


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each with ``n * longest <= max_tokens``
    (a sentence longer than the budget goes alone) and at most ``batch_size`` sentences."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * longest > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def model_fingerprint(model: str, revision: str | None = None) -> str:
    """Identity of a model for the cache: a hub id (+ revision), or for a local folder its
    config and the size and mtime of its weight files (a retrained model gets new entries)."""
    p = Path(model)
    if not p.is_dir():
        return f"hub:{model}@{revision or 'main'}"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt", ".spm", ".model") or f.name.endswith(".json"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return f"dir:{p.resolve()}:{h.hexdigest()[:16]}"


def quiet_transformers() -> None:
    """No per-load progress bars or the Marian 'sacremoses' hint on the user's stderr."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")


def load_tokenizer(cfg: TranslateConfig):
    from transformers import AutoTokenizer

    quiet_transformers()
    if Path(cfg.model).is_dir() and not (Path(cfg.model) / "config.json").is_file():
        raise UserError(f"--model: folder '{cfg.model}' has no config.json (not a saved transformers model)")
    try:
        tok = AutoTokenizer.from_pretrained(hub_source(cfg.model, cfg.revision), revision=cfg.revision)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--model: cannot load tokenizer from '{cfg.model}' ({first})") from None
    if cfg.src_lang and hasattr(tok, "src_lang"):
        tok.src_lang = NLLB_CODES.get(cfg.src_lang, cfg.src_lang) if _is_nllb(tok) else cfg.src_lang
    return tok


def _is_nllb(tok) -> bool:
    return "Nllb" in type(tok).__name__


def target_start_token(tok, cfg: TranslateConfig) -> str | None:
    """The token a multilingual model must start its output with (NLLB ``swe_Latn``, M2M100
    ``__sv__``), or a Marian multi-target prefix (``>>swe<<``, put on the source); None if the
    model is single-target. Raises UserError when the model needs --tgt-lang and has none."""
    name = type(tok).__name__
    if "Nllb" in name or "M2M100" in name:
        if not cfg.tgt_lang:
            raise UserError(f"--tgt-lang is required for {name.replace('TokenizerFast', '').replace('Tokenizer', '')} models (e.g. --tgt-lang sv)")
        code = NLLB_CODES.get(cfg.tgt_lang, cfg.tgt_lang) if "Nllb" in name else f"__{cfg.tgt_lang}__"
        if tok.convert_tokens_to_ids(code) == tok.unk_token_id:
            raise UserError(f"--tgt-lang: '{cfg.tgt_lang}' is not a language of {cfg.model} ({code} unknown)")
        return code
    return None
