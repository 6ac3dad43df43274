"""Tiny random-weight models of real architectures, built offline, for tests, examples and CPU benchmarks.

They exercise the real transformers loading and scoring code; their scores carry no meaning.
"""

from __future__ import annotations

from pathlib import Path

from ._deps import require

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DECODER_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ENCODER_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def _training_corpus() -> list[str]:
    """Text the tiny tokenizers learn from: this package's own source and some prose."""
    sources = [p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parent.rglob("*.py"))]
    prose = "Write a function that returns the sum of a list. Here is the solution in Python, C++ and Java."
    return sources + [prose] * 20


def build_tiny_decoder_tokenizer(path: str | Path, vocab_size: int = 1024):
    """Byte-level BPE tokenizer with a Qwen-style chat template; pad (<|endoftext|>) differs from eos (<|im_end|>)."""
    tokenizers = require("tokenizers", "hf")
    transformers = require("transformers", "hf")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=DECODER_SPECIAL_TOKENS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=1 << 20
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(path))
    return fast


def _tiny_qwen3_config(tokenizer, *, num_layers: int, head_dim: int, **extra):
    """A toy-size Qwen3 config over the tiny decoder tokenizer (head_dim >= 32, as vLLM needs)."""
    transformers = require("transformers", "hf")
    return transformers.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=head_dim,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        **extra,
    )


def build_tiny_qwen3_classifier(path: str | Path, *, seed: int = 0, num_layers: int = 2, head_dim: int = 32):
    """A Qwen3ForSequenceClassification with 1 logit and random weights, saved with its tokenizer."""
    torch = require("torch", "hf")
    transformers = require("transformers", "hf")
    tokenizer = build_tiny_decoder_tokenizer(path)
    config = _tiny_qwen3_config(tokenizer, num_layers=num_layers, head_dim=head_dim, num_labels=1)
    torch.manual_seed(seed)
    model = transformers.Qwen3ForSequenceClassification(config)
    model.save_pretrained(str(path))
    return model, tokenizer


def build_tiny_bert_classifier(path: str | Path, *, seed: int = 0):
    """A BertForSequenceClassification (an encoder RM) with 1 logit, random weights and a WordPiece tokenizer."""
    torch = require("torch", "hf")
    tokenizers = require("tokenizers", "hf")
    transformers = require("transformers", "hf")
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tokenizers.decoders.WordPiece()
    trainer = tokenizers.trainers.WordPieceTrainer(vocab_size=1024, special_tokens=ENCODER_SPECIAL_TOKENS)
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        model_max_length=512,
    )
    tokenizer.save_pretrained(str(path))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=512, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(str(path))
    return model, tokenizer


def build_tiny_qwen3_causal_lm(path: str | Path, *, seed: int = 0, num_layers: int = 2, head_dim: int = 32):
    """A Qwen3ForCausalLM (a policy for generation tests) with random weights, saved with its chat tokenizer."""
    torch = require("torch", "hf")
    transformers = require("transformers", "hf")
    tokenizer = build_tiny_decoder_tokenizer(path)
    config = _tiny_qwen3_config(tokenizer, num_layers=num_layers, head_dim=head_dim)
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(config)
    model.save_pretrained(str(path))
    return model, tokenizer


def reward_model_or_tiny(name_or_path: str | None):
    """`RewardModel.from_pretrained(name_or_path)`, or, when None, a tiny random Qwen3 RM built in a temp dir.

    For examples that run offline: the tiny model's scores are arbitrary, so say so when it is used.
    """
    import tempfile

    from .reward_model import RewardModel

    if name_or_path is None:
        print("note: no --rm given; using a tiny random-weight Qwen3 classifier, so the ranking is arbitrary\n")
        name_or_path = tempfile.mkdtemp(prefix="tiny-rm-")
        build_tiny_qwen3_classifier(name_or_path)
    return RewardModel.from_pretrained(name_or_path)
