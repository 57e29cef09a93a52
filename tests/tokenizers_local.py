"""Real-style tokenizers built offline at test time, and tiny Llama models that match them.

* :func:`sentencepiece_tokenizer` — a SentencePiece BPE model (``▁`` pieces, byte fallback)
  trained with the ``sentencepiece`` package, wrapped the way transformers 5 loads Llama
  checkpoints: a ``LlamaTokenizer`` (tokenizers backend) with ``<s>`` BOS and ``</s>`` EOS.
  ``chat=True`` adds a Llama-2-style ``[INST]`` template that writes the BOS itself.
* :func:`byte_level_tokenizer` — GPT-2-style byte-level BPE (``Ġ`` pieces) trained with the
  ``tokenizers`` package, as a ``PreTrainedTokenizerFast`` with no BOS. ``chat=True`` adds
  ChatML-style turn markers and template (end-of-turn ``<|im_end|>`` then a newline).
* :func:`tiny_llama` / :func:`save_model_and_tokenizer` — a random ``LlamaForCausalLM`` whose
  vocabulary matches a tokenizer, saved with it to a folder for end-to-end tests.

Training happens once per test session (cached); each call returns a fresh tokenizer object,
so a test may change it without affecting others. The templates are our own minimal Jinja,
shaped like the families they imitate.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import pytest

from springback.worlds import get_world

# Our own small templates in the shape of three common families.
LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] | trim }} [/INST]"
    "{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

CHAT_MARKERS = ["<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# Text the test pairs are made of, so most words become whole pieces.
_EXTRA = [
    "café — naïve 東京 is a city, and Zoë's café is naïve.",
    "USER: how do I fix that? ASSISTANT: sorry, I can not help with that.",
    "The movie was great! It was not bad; the end was good.",
    "[INST] question [/INST] answer",
    "line one\nline two\n\nline three\tand a tab",
    "numbers 12 345 6789 and (brackets) \"quotes\" 'single' - dash",
]


@functools.lru_cache(maxsize=None)
def corpus() -> tuple[str, ...]:
    """A few hundred sentences: the sentiment world's texts plus non-ASCII and chat-shaped lines."""
    w = get_world("sentiment")
    texts = w.train_prompts[:40] + w.aligned_responses[:40] + w.opposing_responses[:40] + w.general[:80]
    return tuple(texts + _EXTRA * 5)


@functools.lru_cache(maxsize=None)
def _sentencepiece_proto(vocab_size: int = 600) -> bytes:
    """A SentencePiece BPE model trained in memory (unk=0, bos=1, eos=2 as in Llama)."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed (it is in the dev extra)")

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, num_threads=1, minloglevel=2,
    )
    return buf.getvalue()


def sentencepiece_processor() -> Any:
    """The trained SentencePiece model itself (the reference the wrapped tokenizer must match)."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed (it is in the dev extra)")

    return spm.SentencePieceProcessor(model_proto=_sentencepiece_proto())


@functools.lru_cache(maxsize=None)
def _sentencepiece_vocab_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Vocabulary and BPE merges of the SentencePiece model, as transformers' converter derives
    them (every split of a piece into two ordinary pieces, ordered by the merged piece's rank)."""
    sp = sentencepiece_processor()
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    ordinary = {i for i in range(len(pieces)) if not (sp.is_unknown(i) or sp.is_control(i) or sp.is_byte(i))}
    merges = []
    for i in sorted(ordinary):
        piece = pieces[i]
        splits = [(vocab[piece[:j]], vocab[piece[j:]]) for j in range(1, len(piece))
                  if vocab.get(piece[:j]) in ordinary and vocab.get(piece[j:]) in ordinary]
        merges += [(pieces[a], pieces[b]) for a, b in sorted(splits)]
    return vocab, tuple(merges)


def sentencepiece_tokenizer(chat: bool = False) -> Any:
    """Llama-style SentencePiece tokenizer (adds ``<s>``; ``chat``: Llama-2-style template)."""
    from transformers import LlamaTokenizer

    vocab, merges = _sentencepiece_vocab_merges()
    tok = LlamaTokenizer(vocab=dict(vocab), merges=list(merges), unk_token="<unk>", bos_token="<s>",
                         eos_token="</s>", add_bos_token=True, add_eos_token=False)
    if chat:
        tok.chat_template = LLAMA2_TEMPLATE
    return tok


@functools.lru_cache(maxsize=None)
def _byte_level_json(vocab_size: int = 700) -> str:
    """A byte-level BPE trained with ``tokenizers`` (GPT-2 pre-tokenisation, ``Ġ`` pieces)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)  # as GPT-2 / Qwen ship it
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|begin_of_text|>"] + CHAT_MARKERS,
                                  show_progress=False)
    tk.train_from_iterator(corpus(), trainer)
    return tk.to_str()


def byte_level_tokenizer(chat: bool = False, bos: bool = False) -> Any:
    """GPT-2-style byte-level BPE (EOS ``<|endoftext|>``, no BOS).

    ``chat``: a ChatML-style template. ``bos``: Llama-3 style instead — the tokenizer adds
    ``<|begin_of_text|>`` to plain text and (with ``chat``) the template writes it itself.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer.from_str(_byte_level_json())
    kw: dict[str, Any] = {"eos_token": "<|endoftext|>"}
    if bos:
        bos_id = tk.token_to_id("<|begin_of_text|>")
        tk.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                          special_tokens=[("<|begin_of_text|>", bos_id)]),
        ])
        kw["bos_token"] = "<|begin_of_text|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **kw)
    if chat:
        tok.chat_template = LLAMA3_TEMPLATE if bos else CHATML_TEMPLATE
    return tok


def tiny_llama(tokenizer: Any, seed: int = 0, hidden: int = 16, layers: int = 1) -> Any:
    """A random ``LlamaForCausalLM`` (configs only) whose embedding covers ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_model_and_tokenizer(tokenizer: Any, directory: str | Path, seed: int = 0, **kw: Any) -> Path:
    """Save :func:`tiny_llama` for ``tokenizer`` and the tokenizer itself to ``directory``."""
    directory = Path(directory)
    tiny_llama(tokenizer, seed, **kw).save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory

