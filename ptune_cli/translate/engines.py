"""Translation engines: transformers seq2seq (Marian, NLLB-200, M2M100, any seq2seq LM).

An engine turns a list of clean (stripped, non-empty) strings into :class:`Translation`s in
the same order. Batches are sorted by length and cut under a token budget so that padding is
small and a long sentence never shares a batch with many others (the OOM users hit).
The CTranslate2 engine lives in :mod:`ptune_cli.translate.ct2`; what both share (tokenizer,
model identity, length batching) in :mod:`ptune_cli.translate.seq2seq`, so neither imports
the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ptune_cli.errors import UserError
from ptune_cli.models import hub_source, resolve_device, torch_dtype
from ptune_cli.translate.config import TranslateConfig
from ptune_cli.translate.quality import Translation, check_output, length_cap
from ptune_cli.translate.seq2seq import (
    length_batches,
    load_tokenizer,
    model_fingerprint,
    target_start_token,
)


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
            self.model = AutoModelForSeq2SeqLM.from_pretrained(hub_source(cfg.model, cfg.revision),
                                                                revision=cfg.revision, dtype=dtype)
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

