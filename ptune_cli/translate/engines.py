"""Translation engines: transformers seq2seq (Marian, NLLB-200, M2M100, any seq2seq LM).

An engine turns a list of clean (stripped, non-empty) strings into :class:`Translation`s in
the same order. Batches are sorted by length and cut under a token budget so that padding is
small and a long sentence never shares a batch with many others (the OOM users hit).
The CTranslate2 engine lives in :mod:`ptune_cli.translate.ct2`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.models import resolve_device, torch_dtype
from ptune_cli.translate.config import TranslateConfig
from ptune_cli.translate.quality import Translation, check_output, length_cap

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
        tok = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
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


class HFEngine:
    """``AutoModelForSeq2SeqLM.generate`` on length-sorted batches."""

    name = "transformers"

    def __init__(self, cfg: TranslateConfig):
        import torch
        from transformers import AutoModelForSeq2SeqLM

        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.tok = load_tokenizer(cfg)
        self.device = resolve_device(cfg.device)
        dtype = torch_dtype(cfg.precision, self.device)
        try:
            self.model = AutoModelForSeq2SeqLM.from_pretrained(cfg.model, revision=cfg.revision, dtype=dtype)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--model: cannot load a seq2seq model from '{cfg.model}' ({first})") from None
        self.model.to(self.device).eval()
        # opus-mt configs force EOS at the length limit, which would hide truncation: the
        # output would look finished. Without it, a capped output is detectable (length_cap).
        self.model.generation_config.forced_eos_token_id = None
        self.forced_bos = target_start_token(self.tok, cfg)
        marian_prefix = f">>{cfg.tgt_lang}<<" if cfg.tgt_lang else None
        self.source_prefix = (
            marian_prefix + " "
            if marian_prefix and self.forced_bos is None and marian_prefix in self.tok.get_vocab()
            else ""
        )
        self.fingerprint = model_fingerprint(cfg.model, cfg.revision)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        enc = self.tok([self.source_prefix + t for t in texts], add_special_tokens=True)["input_ids"]
        return [len(ids) for ids in enc]

    def translate(self, texts: Sequence[str], on_batch: Callable[[list[int], list[Translation]], None] | None = None) -> list[Translation]:
        """Translate clean strings, in order; ``on_batch(indices, results)`` after each batch."""
        lengths = self.count_tokens(texts)
        out: list[Translation | None] = [None] * len(texts)
        for batch in length_batches(lengths, self.cfg.batch_size, self.cfg.max_tokens):
            results = self._generate([texts[i] for i in batch], [lengths[i] for i in batch])
            for i, tr in zip(batch, results, strict=True):
                out[i] = tr
            if on_batch:
                on_batch(batch, results)
        return out  # type: ignore[return-value]

    def _generate(self, texts: list[str], lengths: list[int]) -> list[Translation]:
        import torch

        caps = [length_cap(n, self.cfg.length_ratio, self.cfg.max_length) for n in lengths]
        enc = self.tok([self.source_prefix + t for t in texts], return_tensors="pt", padding=True,
                       truncation=True, max_length=self._max_source_len()).to(self.device)
        kwargs = dict(max_new_tokens=max(caps), num_beams=self.cfg.beam_size, do_sample=False)
        if self.forced_bos:
            kwargs["forced_bos_token_id"] = self.tok.convert_tokens_to_ids(self.forced_bos)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        special = set(self.tok.all_special_ids)
        results = []
        for src, cap, n_in, row in zip(texts, caps, lengths, gen.tolist(), strict=True):
            body = row[1:]  # drop the decoder start token
            ended = next((k for k, t in enumerate(body) if t in eos_ids), None)
            # cut at this sentence's own cap, so its output never depends on its batch-mates
            finished = ended is not None and ended < cap and n_in <= self._max_source_len()
            content = [t for t in body[: ended if finished else cap] if t not in special]
            text = self.tok.decode(content, skip_special_tokens=True).strip()
            results.append(check_output(src, text, finished))
        return results

    def _max_source_len(self) -> int:
        n = getattr(self.model.config, "max_position_embeddings", 512) or 512
        return min(int(n), 1024)


def load_engine(cfg: TranslateConfig):
    """The engine named by ``cfg.engine`` (imports torch / ctranslate2 lazily)."""
    if cfg.engine == "ctranslate2":
        from ptune_cli.translate.ct2 import CT2Engine

        return CT2Engine(cfg)
    return HFEngine(cfg)

