"""Tiny models built from configs for tests (never downloaded).

``build_tiny_causal_lm(dir)`` trains a byte-level BPE vocabulary on a few lines of English and
Swedish text and saves a 2-layer Llama (hidden 32) with its tokenizer to ``dir``; the result
loads with ``AutoModelForCausalLM.from_pretrained(dir)`` / ``AutoTokenizer.from_pretrained(dir)``
like any hub model.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The company reported strong growth in quarterly profit.",
    "Shares fell sharply after the announcement.",
    "Företaget rapporterade stark vinsttillväxt under kvartalet.",
    "Aktierna föll kraftigt efter beskedet. Känslor för Lloyds",
    "positiv negativ neutral positivt negativt neutralt positiva negativa neutrala",
    "positive negative neutral",
    "Intent: iot_coffee Slots: device_type(coffee machine), date(tomorrow)",
    "Intent: alarm_set Slots: None time(seven am) place_name(stockholm)",
    "make me a coffee please. wake me up at seven am tomorrow.",
    "gör en kaffe till mig. väck mig klockan sju i morgon.",
    "What is the weather like in Stockholm today?",
    "Hur är vädret i Stockholm idag? åäö ÅÄÖ é ü",
    "0 1 2 3 4 5 6 7 8 9 : ; , . ! ? ( ) \n",
]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def train_tokenizer(out_dir: Path, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_causal_lm(out_dir: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a 2-layer, hidden-32 causal LM (``llama`` or ``gpt2``) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out)
    common = dict(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if arch == "llama":
        cfg = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **common,
        )
    elif arch == "gpt2":
        cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512, **common)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    return out
