"""A tiny Marian translation model built from a config for tests and benches (never downloaded).

``build_tiny_marian(dir)`` trains a SentencePiece vocabulary on a few lines of English and
Swedish, writes it in the opus-mt layout (``source.spm``, ``target.spm``, ``vocab.json`` with
``</s>`` = 0, ``<unk>`` = 1 and ``<pad>`` as the LAST entry, which CTranslate2's converter
expects) and saves a random-weight ``MarianMTModel``. ``final_logits_bias[eos]`` is raised so
that greedy outputs end instead of always running to the length cap.

``pad_vocab_to`` adds unused vocabulary entries so the output layer has a realistic size.
The default is 2+2 layers with d_model 32 (loads in well under a second) and a large init_std
so that outputs depend on the input: a mix of short outputs and ones that run to the cap and
repeat themselves (what the quality flags must catch). The bench passes ``d_model=512,
layers=6, init_std=0.02, eos_bias=1.0`` for an opus-mt-sized model whose greedy outputs end
near the input's length.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

CORPUS = [
    "The company reported strong growth in quarterly profit.",
    "Shares fell sharply after the announcement.",
    "Företaget rapporterade stark vinsttillväxt under kvartalet.",
    "Aktierna föll kraftigt efter beskedet. Känslor för Lloyds",
    "positive negative neutral positiv negativ neutral positiva",
    "what alarms are set for today? wake me up at seven am tomorrow [ ] ( )",
    "vilka larm är inställda för idag? väck mig klockan sju i morgon",
    "make me a coffee please. turn off the lights in the kitchen",
    "gör en kaffe till mig. släck lamporna i köket. spela musik",
    "What is the weather like in Stockholm this weekend, and in Paris on sunday morning?",
    "Hur är vädret i Stockholm idag? åäö ÅÄÖ é ü 0 1 2 3 4 5 6 7 8 9 : ; , . ! ?",
    "play some jazz music, set an alarm for four am, remind me about the meeting",
    "email my boss, order a pizza, how far is the moon, tell me a joke",
]


def _train_spm(lines: list[str], vocab_size: int) -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 8),
        model_writer=buf,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        model_type="unigram",
        # Marian's layout: </s>=0, <unk>=1, no <s>; <pad> is appended at the end of vocab.json
        unk_id=1,
        eos_id=0,
        bos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    return buf.getvalue()


def build_tiny_marian(
    out_dir: str | Path,
    *,
    d_model: int = 32,
    layers: int = 2,
    heads: int = 4,
    ffn: int | None = None,
    vocab_size: int = 250,
    eos_bias: float = 2.0,
    init_std: float = 0.2,
    seed: int = 0,
    corpus: list[str] | None = None,
    pad_vocab_to: int = 0,
) -> Path:
    """Save a random Marian en→sv model and its tokenizer to ``out_dir``; returns the folder."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_bytes = _train_spm(corpus or CORPUS, vocab_size)
    for name in ("source.spm", "target.spm"):
        (out / name).write_bytes(model_bytes)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    # unused entries give the output layer a realistic size (opus-mt-en-sv: 58,101) for benches
    for k in range(len(vocab), pad_vocab_to - 1):
        vocab[f"<unused{k}>"] = k
    vocab["<pad>"] = len(vocab)  # last, as in the opus-mt checkpoints
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        tok = MarianTokenizer(
            source_spm=str(out / "source.spm"),
            target_spm=str(out / "target.spm"),
            vocab=str(out / "vocab.json"),
            source_lang="en",
            target_lang="sv",
        )
    tok.save_pretrained(out)
    pad = vocab["<pad>"]
    cfg = MarianConfig(
        vocab_size=len(vocab),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn or 4 * d_model,
        decoder_ffn_dim=ffn or 4 * d_model,
        max_position_embeddings=512,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        init_std=init_std,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(cfg)
    with torch.no_grad():
        # A random model never prefers EOS; this bias makes outputs end near the input length.
        model.final_logits_bias[0, 0] = eos_bias
        model.final_logits_bias[0, len(pieces) : pad] = -100.0  # unused entries: never generated
    model.generation_config.num_beams = 1
    model.save_pretrained(out)
    return out


if __name__ == "__main__":  # pragma: no cover - handy for manual runs
    import sys

    print(build_tiny_marian(sys.argv[1] if len(sys.argv) > 1 else "tiny-marian"))
