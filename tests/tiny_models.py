"""Tiny models built from configs for tests (never downloaded).

``build_tiny_causal_lm(dir, arch)`` trains a byte-level BPE vocabulary on a few lines of English
and Swedish text and saves a 2-layer, hidden-32 causal LM of one architecture family with its
tokenizer to ``dir``; the result loads with ``AutoModelForCausalLM.from_pretrained(dir)`` /
``AutoTokenizer.from_pretrained(dir)`` like any hub model.

:data:`FAMILIES` covers the families users p-tune, each kept with the trait that can break
prompt injection silently: Gemma's sqrt(hidden)-scaled embeddings, Gemma 2's logit softcapping,
GPT-2's absolute positions, sliding-window attention (a window of 8 tokens, shorter than
prompt + padding in the tests), grouped-query attention, Qwen 3's q/k norms, Phi-3's fused
projections and partial rotary embeddings.
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


WINDOW = 8  # sliding-attention window of the tiny sliding-window families
_ATTN = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)
# family -> (config class name, config kwargs); every family has 2 layers and hidden 32
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(_ATTN, tie_word_embeddings=True)),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=512)),
    # layer 0 sliding, layer 1 full attention (as Gemma 3's 5:1 pattern); embeddings x sqrt(32)
    "gemma3": ("Gemma3TextConfig", dict(_ATTN, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                        layer_types=["sliding_attention", "full_attention"])),
    "gemma2": ("Gemma2Config", dict(_ATTN, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                    final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                    layer_types=["sliding_attention", "full_attention"])),
    "qwen2": ("Qwen2Config", dict(_ATTN, tie_word_embeddings=False)),
    "qwen3": ("Qwen3Config", dict(_ATTN, head_dim=8, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", dict(_ATTN, head_dim=8, sliding_window=WINDOW)),
    "phi3": ("Phi3Config", dict(_ATTN, sliding_window=WINDOW, partial_rotary_factor=0.5,
                                pad_token_id=None)),
}


def build_tiny_causal_lm(out_dir: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a 2-layer, hidden-32 causal LM of family ``arch`` (see :data:`FAMILIES`) and its
    tokenizer."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if arch not in FAMILIES:
        raise ValueError(arch)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out)
    cls, kw = FAMILIES[arch]
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    cfg = getattr(transformers, cls)(**{**common, **kw, "pad_token_id": tok.pad_token_id})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    return out
