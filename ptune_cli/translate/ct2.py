"""The optional CTranslate2 engine (``--engine ctranslate2``): several times faster on CPU.

The HF model is converted once (int8 by default on CPU) into the cache folder, keyed by the
model's fingerprint and the quantization, and reused by later runs. Conversion writes to a
temporary folder renamed into place, so an interrupted conversion is never picked up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.models import hub_source
from ptune_cli.translate.config import TranslateConfig, default_cache_dir
from ptune_cli.translate.quality import Translation, check_output, length_cap
from ptune_cli.translate.seq2seq import (
    length_batches,
    load_tokenizer,
    model_fingerprint,
    target_start_token,
)


def _compute_type(cfg: TranslateConfig, device: str) -> str:
    if cfg.ct2_compute_type != "auto":
        return cfg.ct2_compute_type
    if cfg.precision in ("fp16", "bf16"):
        return {"fp16": "float16", "bf16": "bfloat16"}[cfg.precision] if device == "cuda" else "int8"
    return "int8_float16" if device == "cuda" else "int8"


def converted_dir(cfg: TranslateConfig, quantization: str) -> Path:
    """Where the converted model for ``cfg.model`` lives (converting it on first use)."""
    key = hashlib.sha256(f"{model_fingerprint(cfg.model, cfg.revision)}|{quantization}".encode()).hexdigest()[:20]
    root = Path(cfg.cache).parent if cfg.cache else default_cache_dir()
    target = root / "ct2" / key
    if (target / "model.bin").is_file():
        return target
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise UserError("--engine ctranslate2 needs the ctranslate2 package (pip install 'ptune-cli[ct2]')") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        conv = TransformersConverter(hub_source(cfg.model, cfg.revision), revision=cfg.revision)
        conv.convert(str(tmp / "m"), quantization=quantization, force=True)
        try:
            os.replace(tmp / "m", target)
        except OSError:
            if not (target / "model.bin").is_file():
                raise  # otherwise another process (accelerate launch) converted it first
    except (OSError, ValueError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--engine ctranslate2: cannot convert '{cfg.model}' ({first}; try --engine transformers)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class CT2Engine:
    """CTranslate2 ``Translator`` fed with the HF tokenizer's subword tokens."""

    name = "ctranslate2"

    def __init__(self, cfg: TranslateConfig):
        import ctranslate2

        self.cfg = cfg
        self.tok = load_tokenizer(cfg)
        device = cfg.device if cfg.device != "auto" else ("cuda" if ctranslate2.get_cuda_device_count() else "cpu")
        device, _, index = device.partition(":")
        if device not in ("cpu", "cuda") or not (index or "0").isdigit():
            raise UserError(f"--device {cfg.device}: the ctranslate2 engine runs on cpu, cuda or cuda:N")
        if device == "cuda" and int(index or 0) >= ctranslate2.get_cuda_device_count():
            raise UserError(f"--device {cfg.device}: no such CUDA device here (use --device cpu or auto)")
        self.compute_type = _compute_type(cfg, device)
        path = converted_dir(cfg, "int8" if self.compute_type.startswith("int8") else self.compute_type)
        self.translator = ctranslate2.Translator(
            str(path), device=device, device_index=int(index or 0),
            compute_type=self.compute_type, intra_threads=cfg.threads,
        )
        self.target_prefix = target_start_token(self.tok, cfg)
        self.eos = self.tok.eos_token or "</s>"
        self.fingerprint = model_fingerprint(cfg.model, cfg.revision)

    def _tokens(self, text: str) -> list[str]:
        return self.tok.convert_ids_to_tokens(self.tok(text, add_special_tokens=True)["input_ids"])

    def translate(self, texts: Sequence[str], on_batch: Callable[[list[int], list[Translation]], None] | None = None) -> list[Translation]:
        """Translate clean strings in order (our own length batches, for the progress bar)."""
        toks = [self._tokens(t) for t in texts]
        lengths = [len(t) for t in toks]
        out: list[Translation | None] = [None] * len(texts)
        for batch in length_batches(lengths, self.cfg.batch_size, self.cfg.max_tokens):
            caps = [length_cap(lengths[i], self.cfg.length_ratio, self.cfg.max_length) for i in batch]
            prefix = [[self.target_prefix] for _ in batch] if self.target_prefix else None
            results = self.translator.translate_batch(
                [toks[i] for i in batch], target_prefix=prefix, beam_size=self.cfg.beam_size,
                max_decoding_length=max(caps), return_end_token=True,
                max_input_length=1024,
            )
            done = []
            for i, cap, res in zip(batch, caps, results, strict=True):
                hyp = [t for t in res.hypotheses[0] if t != self.target_prefix]
                ended = hyp.index(self.eos) if self.eos in hyp else None
                # cut at this sentence's own cap, so its output never depends on its batch-mates
                finished = ended is not None and ended < cap
                body = hyp[: ended if finished else cap]
                ids = self.tok.convert_tokens_to_ids(body)
                text = self.tok.decode(ids, skip_special_tokens=True).strip()
                out[i] = check_output(texts[i], text, finished)
                done.append(out[i])
            if on_batch:
                on_batch(batch, done)
        return out  # type: ignore[return-value]
