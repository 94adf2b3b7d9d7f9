"""``ptune translate``: field-aware EN→SV translation of labeled JSONL that never loses a record.

The chain inside: :mod:`.config` (options) → :mod:`.fields` (what to translate per record,
label handling, slot projection via :mod:`.projection`) → :mod:`.runner` (chunks, cache,
resume via :mod:`ptune_cli.resumable`, sharding in :mod:`.shard`) → :mod:`.engines` / :mod:`.ct2`
(the models; what both share in :mod:`.seq2seq`) → :mod:`.score` (sacrebleu).

Python use::

    from ptune_cli.translate import TranslateConfig, run_translate
    report = run_translate("en.jsonl", "sv.jsonl", TranslateConfig(model="Helsinki-NLP/opus-mt-en-sv"))

Nothing here imports torch at import time.
"""

from ptune_cli.translate.config import TranslateConfig
from ptune_cli.translate.runner import run_translate, write_report

__all__ = ["TranslateConfig", "run_translate", "write_report"]
