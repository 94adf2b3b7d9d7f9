"""Options of ``ptune translate`` as one validated dataclass (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ptune_cli.models import cache_dir as default_cache_dir
from ptune_cli.options import PRECISION_ALIASES, PRECISION_HELP, Precision, option

DEFAULT_MODEL = "Helsinki-NLP/opus-mt-en-sv"
# Text fields translated when --fields is not given (those present in each record).
DEFAULT_FIELDS = ("sentence", "utterance", "text", "question", "context")
DEFAULT_LEXICON = "en-sv-sentiment"
FLAGS_FIELD = "_translate_flags"


@dataclass
class TranslateConfig:
    """Everything that decides how records are translated, one :func:`option` per flag.

    ``affects_output``: the options a resumed run must match (batching, threads, device and
    the cache do not change the output). The options that change a translation's text form
    the cache namespace (:meth:`decoding_options`).
    """

    model: str = option(DEFAULT_MODEL, help="HF hub id or local folder of a seq2seq model (Marian, NLLB-200, M2M100, …).")
    fields: tuple[str, ...] = option((), sep=",", show_default=False,
                                     help=f"Comma-separated text fields to translate (default: those of {','.join(DEFAULT_FIELDS)} present).")
    label_field: str = option("label", help="The label field.")
    label_format: Literal["auto", "intent-slot", "sentiment", "text", "keep"] = option(
        "auto", help="intent-slot keeps intent and slot types and projects slot values; sentiment maps through "
        "--lexicon; text translates the label; keep copies it.")
    lexicon: str = option(DEFAULT_LEXICON, help="Sentiment lexicon: a name in templates/labels/ or a JSON/YAML file "
                          "(en-sv-sentiment-plural gives positiva/negativa).")
    src_lang: str | None = option(None, help="Source language code for multilingual models (en, eng_Latn).")
    tgt_lang: str | None = option(None, help="Target language code; required by NLLB-200 (sv → swe_Latn) and M2M100 (sv).")
    engine: Literal["transformers", "ctranslate2"] = option(
        "transformers", help="transformers, or ctranslate2 (converts the model once into the cache folder; int8 on CPU).")
    beam_size: int = option(1, help="Beams (1 = greedy).")
    # 32 measured best on CPU (see bench)
    batch_size: int = option(32, affects_output=False, help="Most sentences per batch.")
    max_tokens: int = option(4096, affects_output=False,
                             help="Token budget per batch (sentences × longest input); batches are length-sorted.")
    max_length: int = option(256, help="Hard cap on output tokens; outputs that reach their cap are flagged length_cap.")
    length_ratio: float = option(2.0, help="Per-sentence output cap: ratio × input tokens + 10 (stops runaway repetition early).")
    device: str = option("auto", affects_output=False, help="auto, cpu, cuda, cuda:1, mps.")
    precision: Precision = option("auto", aliases=PRECISION_ALIASES, help=PRECISION_HELP)
    ct2_compute_type: str = option("auto", help="CTranslate2 compute type (auto: int8 on CPU, int8_float16 on GPU).")
    threads: int = option(0, affects_output=False, help="CPU threads (0 = library default).")
    cache: str | None = option(None, affects_output=False, show_default=False,
                               help="Translation cache (sqlite; default: ~/.cache/ptune-cli/translate.sqlite).")
    use_cache: bool = option(True, flag=" /--no-cache", affects_output=False, show_default=False,
                             help="Don't read or write the persistent cache (duplicates in the run are still translated once).")
    chunk_records: int = option(512, affects_output=False, help="Records per durable step (written and fsynced together).")
    flags_field: str = option(FLAGS_FIELD, help="Field that lists a record's problems (length_cap, repetition, "
                              "empty_output, slot_projection, label_kept).")
    revision: str | None = option(None, cli=False, help="Hub revision of --model (Python use).")

    def problems(self) -> list[str]:
        """The checks beyond the choices (``options.validate`` runs both, once, in run_translate)."""
        problems = []
        for flag, value in (("--beam-size", self.beam_size), ("--batch-size", self.batch_size),
                            ("--max-tokens", self.max_tokens), ("--max-length", self.max_length),
                            ("--chunk-records", self.chunk_records)):
            if value < 1:
                problems.append(f"{flag} must be >= 1 (got {value})")
        if self.length_ratio <= 0:
            problems.append(f"--length-ratio must be > 0 (got {self.length_ratio})")
        if self.threads < 0:
            problems.append(f"--threads must be >= 0 (got {self.threads})")
        if not self.model:
            problems.append("--model must name a hub id or a local folder")
        if any(not f.strip() for f in self.fields):
            problems.append("--fields has an empty name")
        if self.label_field in self.fields:
            problems.append(f"--fields lists the label field '{self.label_field}' (use --label-format text)")
        if not self.flags_field:
            problems.append("--flags-field must not be empty (flags are never hidden)")
        return problems

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else default_cache_dir() / "translate.sqlite"

    def decoding_options(self) -> dict:
        """The options that change a translation's text (part of the cache key)."""
        keys = ("engine", "src_lang", "tgt_lang", "beam_size", "max_length", "length_ratio",
                "precision", "ct2_compute_type", "revision")
        return {k: getattr(self, k) for k in keys}
