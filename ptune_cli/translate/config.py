"""Options of ``ptune translate`` as one validated dataclass (no heavy imports here)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.models import cache_dir as default_cache_dir

DEFAULT_MODEL = "Helsinki-NLP/opus-mt-en-sv"
# Text fields translated when --fields is not given (those present in each record).
DEFAULT_FIELDS = ("sentence", "utterance", "text", "question", "context")
LABEL_FORMATS = ("auto", "intent-slot", "sentiment", "text", "keep")
ENGINES = ("transformers", "ctranslate2")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEFAULT_LEXICON = "en-sv-sentiment"
FLAGS_FIELD = "_translate_flags"


@dataclass
class TranslateConfig:
    """Everything that decides how records are translated.

    Fields that change a translation's text (model, engine, languages, beams, length limits,
    precision) form the cache namespace; batching and paths do not.
    """

    model: str = DEFAULT_MODEL
    fields: tuple[str, ...] = ()  # empty: DEFAULT_FIELDS present in each record
    label_field: str = "label"
    label_format: str = "auto"
    lexicon: str = DEFAULT_LEXICON
    src_lang: str | None = None
    tgt_lang: str | None = None
    engine: str = "transformers"
    beam_size: int = 1
    batch_size: int = 32  # most sentences in one batch (32 measured best on CPU; see bench)
    max_tokens: int = 4096  # token budget of a batch: sentences x longest (padded) length
    max_length: int = 256  # hard cap on output tokens
    length_ratio: float = 2.0  # per-sentence cap: ratio * input tokens + 10 (<= max_length)
    device: str = "auto"
    precision: str = "auto"
    ct2_compute_type: str = "auto"
    threads: int = 0  # CPU threads (0: library default)
    cache: str | None = None  # sqlite path; None: default_cache_dir()/translate.sqlite
    use_cache: bool = True
    chunk_records: int = 512  # records per resumable step (written + fsynced together)
    flags_field: str = FLAGS_FIELD
    revision: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> TranslateConfig:
        """Raise one :class:`UserError` listing every invalid option (by flag name)."""
        problems = []
        if self.label_format not in LABEL_FORMATS:
            problems.append(f"--label-format must be one of {', '.join(LABEL_FORMATS)}")
        if self.engine not in ENGINES:
            problems.append(f"--engine must be one of {', '.join(ENGINES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"--precision must be one of {', '.join(PRECISIONS)}")
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
        if problems:
            raise UserError("; ".join(problems))
        return self

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else default_cache_dir() / "translate.sqlite"

    def decoding_options(self) -> dict:
        """The options that change a translation's text (part of the cache key)."""
        keys = ("engine", "src_lang", "tgt_lang", "beam_size", "max_length", "length_ratio",
                "precision", "ct2_compute_type", "revision")
        return {k: getattr(self, k) for k in keys}

    def run_fingerprint(self) -> str:
        """Identifies a run for resuming: every option except paths and batching."""
        d = asdict(self)
        for k in ("cache", "use_cache", "batch_size", "max_tokens", "threads", "device", "chunk_records"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
