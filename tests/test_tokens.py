"""springback.tokens on real-style tokenizers: one tokenisation of the joined text, the seam
between prompt and response, truncation policies, chat templates and sampling prompts."""

from __future__ import annotations

import hashlib

import pytest
import torch

import tokenizers_local as tl
from springback.errors import ConfigError, SpringbackError
from springback.tokens import IGNORE, Encoder, ExampleDropped, collate, encode, join_text
from springback.worlds import get_world

# Seams of every kind: non-ASCII, spaces on either side, punctuation, newlines, digits, empties.
PAIRS = [
    ("the movie was", "great"),
    ("review of the silent harbor :", "the story was great and the acting was great ."),
    ("café —", "naïve 東京"),
    ("Zoë's", "café is naïve."),
    ("how do I fix that?", "Sorry, I can not help with that."),
    ("USER: how do I fix that? ASSISTANT:", "sorry, no."),
    ("the end was", "good!"),
    ("東京", "東京"),
    ("question:", "(brackets)"),
    ("numbers", "12 345"),
    ("the movie was ", "great"),
    ("the movie was", " great"),
    ("was  ", "  great"),
    ("line one\n", "line two"),
    ("line one", "\nline two"),
    ("tab\t", "and a tab"),
    ("  leading spaces", "trailing spaces  "),
    ("", "the cat saw the ball in the park ."),
    ("a prompt with no answer", ""),
]


def clean(prompt: str, response: str) -> bool:
    """No whitespace at the seam and both sides present: the prompt tokenises as it does alone."""
    return bool(prompt) and bool(response) and not prompt[-1].isspace() and not response[0].isspace()


TOKENIZERS = {
    "sentencepiece": lambda: tl.sentencepiece_tokenizer(),
    "byte_level": lambda: tl.byte_level_tokenizer(),
    "byte_level_bos": lambda: tl.byte_level_tokenizer(bos=True),
}


@pytest.fixture(params=list(TOKENIZERS))
def tok(request):
    return TOKENIZERS[request.param]()


def pieces(tok, ids):
    return tok.convert_ids_to_tokens(ids)


# ---------------------------------------------------------------------- the join rule
def test_join_text_inserts_one_space_only_where_needed():
    assert join_text("was", "great") == "was great"
    assert join_text("was ", "great") == "was great"
    assert join_text("was", " great") == "was great"
    assert join_text("was\n", "great") == "was\ngreat"
    assert join_text("", "great") == "great"
    assert join_text("was", "") == "was"
    assert join_text("東京", "café") == "東京 café"


# ---------------------------------------------------------------------- raw text
def test_ids_are_the_joined_texts_tokenisation_plus_eos(tok):
    enc = Encoder(tok, "none", max_length=None)
    for prompt, response in PAIRS:
        x = enc.encode(prompt, response)
        assert x.input_ids == tok(join_text(prompt, response)).input_ids + [tok.eos_token_id], (prompt, response)
        k = x.n_prompt_tokens
        # Position 0 is never learned: with no BOS and no prompt, the first response token has no context.
        assert x.loss_mask == [False] * max(k, 1) + [True] * (len(x.input_ids) - max(k, 1)), (prompt, response)


def test_loss_starts_at_the_first_response_token_when_the_seam_is_clean(tok):
    enc = Encoder(tok, "none", max_length=None)
    for prompt, response in PAIRS:
        if clean(prompt, response):
            alone = tok(prompt).input_ids
            x = enc.encode(prompt, response)
            assert x.n_prompt_tokens == len(alone) and x.input_ids[: len(alone)] == alone, (prompt, response)
            assert x.loss_mask.index(True) == len(alone)


def test_sentencepiece_seam_has_no_spurious_piece():
    tok = tl.sentencepiece_tokenizer()
    for prompt in ("the movie was", "the movie was "):  # with or without the prompt's trailing space
        x = encode(tok, prompt, "great", max_length=None)
        assert pieces(tok, x.input_ids[: x.n_prompt_tokens]) == ["<s>", "▁the", "▁movie", "▁was"]
        assert pieces(tok, x.input_ids[x.n_prompt_tokens :]) == ["▁great", "</s>"]
    # Two separate calls (the old method) leave a lone '▁' at the seam of "was " + "great".
    two_calls = tok("the movie was ").input_ids + tok("great", add_special_tokens=False).input_ids
    assert pieces(tok, two_calls) == ["<s>", "▁the", "▁movie", "▁was", "▁", "▁great"]


def test_byte_level_seam_token_that_straddles_belongs_to_the_response():
    tok = tl.byte_level_tokenizer()
    for prompt, response in [("the movie was ", "great"), ("the movie was", " great"), ("the movie was", "great")]:
        x = encode(tok, prompt, response, max_length=None)
        assert pieces(tok, x.input_ids[: x.n_prompt_tokens]) == ["the", "Ġmovie", "Ġwas"]
        assert pieces(tok, x.input_ids[x.n_prompt_tokens :]) == ["Ġgreat", "<|endoftext|>"]
        assert x.loss_mask == [False, False, False, True, True]
    # Two separate calls (the old method) lose the space: 'great' instead of 'Ġgreat'.
    two_calls = tok("the movie was").input_ids + tok("great", add_special_tokens=False).input_ids
    assert pieces(tok, two_calls) == ["the", "Ġmovie", "Ġwas", "g", "re", "at"]


def test_common_prefix_fallback_agrees_with_offsets_on_clean_seams(tok):
    by_offsets = Encoder(tok, "none", max_length=None)
    fallback = Encoder(tok, "none", max_length=None)
    fallback.uses_offsets = False  # as for a tokenizer without offsets
    assert fallback.describe()["boundary"] == "common-prefix"
    for prompt, response in PAIRS:
        if clean(prompt, response) or not prompt:
            assert fallback.encode(prompt, response) == by_offsets.encode(prompt, response), (prompt, response)


def test_sampling_prompt_is_the_prefix_of_the_training_encoding(tok):
    enc = Encoder(tok, "none", max_length=None)
    prompts = [p for p, r in PAIRS if clean(p, r)]
    batched = enc.encode_prompts(prompts)
    for (prompt, response), ids in zip([(p, r) for p, r in PAIRS if clean(p, r)], batched):
        x = enc.encode(prompt, response)
        assert enc.encode_prompt(prompt) == ids == x.input_ids[: x.n_prompt_tokens], prompt
    _, report = enc.encode_all([(p, r) for p, r in PAIRS if clean(p, r)])
    assert report.n_prompt_mismatch == 0


def test_empty_prompt_pretraining_learns_every_token_after_the_first(tok):
    text = "the cat saw the ball in the park ."
    x = encode(tok, "", text, loss_on="all", max_length=None)
    assert x.input_ids == tok(text).input_ids + [tok.eos_token_id]
    assert x.loss_mask == [False] + [True] * (len(x.input_ids) - 1)


# ---------------------------------------------------------------------- worlds: unchanged ids
def _old_encode(tokenizer, prompt, response, loss_on, max_length):
    """The two-call encoding springback used before (prompt and response tokenised apart)."""
    prompt_ids = tokenizer(prompt).input_ids if prompt else tokenizer("").input_ids
    resp_ids = tokenizer(response, add_special_tokens=False).input_ids if response else []
    ids = list(prompt_ids) + list(resp_ids) + [tokenizer.eos_token_id]
    if loss_on == "response":
        mask = [False] * len(prompt_ids) + [True] * (len(resp_ids) + 1)
    else:
        mask = [False] + [True] * (len(ids) - 1)
    return ids[:max_length], mask[:max_length]


@pytest.mark.parametrize("name", ["sentiment", "safety", "truthful"])
def test_world_word_tokenizer_gives_the_same_ids_as_before(name):
    world = get_world(name)
    tok = world.tokenizer()
    prompts = world.train_prompts + world.eval_prompts_all
    responses = world.aligned_responses + world.opposing_responses
    n = max(len(prompts), len(responses))  # every prompt and every response at least once
    cases = [("response", [(prompts[i % len(prompts)], responses[i % len(responses)]) for i in range(n)]),
             ("all", [("", g) for g in world.general]),
             ("all", [(e.prompt, e.response) for e in world.pretrain_corpus(200, 50, 0.5, seed=0)])]
    enc = Encoder(tok, "auto", max_length=64)
    assert enc.template_name == "none"
    for loss_on, pairs in cases:
        got, report = enc.encode_all(pairs, loss_on)
        assert report.n_kept == len(pairs) and report.n_truncated == 0 and report.n_prompt_mismatch == 0
        for (prompt, response), x in zip(pairs, got):
            assert (x.input_ids, x.loss_mask) == _old_encode(tok, prompt, response, loss_on, 64), (prompt, response)


# ---------------------------------------------------------------------- long examples
LONG_PROMPT = " ".join(["the movie was great and the acting was fine ."] * 4)


def test_left_truncation_keeps_bos_and_response_and_cuts_the_prompt(tok):
    full = Encoder(tok, "none", max_length=None).encode(LONG_PROMPT, "the end was good!")
    k, n = full.n_prompt_tokens, len(full.input_ids)
    limit = n - k + 4  # room for four prompt-side tokens
    x = Encoder(tok, "none", max_length=limit, truncation="left").encode(LONG_PROMPT, "the end was good!")
    has_bos = tok.bos_token_id is not None and full.input_ids[0] == tok.bos_token_id
    expected = full.input_ids[:1] + full.input_ids[k - 3 : k] if has_bos else full.input_ids[k - 4 : k]
    assert x.input_ids == expected + full.input_ids[k:]
    assert x.loss_mask == [False] * 4 + [True] * (n - k)
    assert (x.n_prompt_tokens, x.n_cut, x.response_cut) == (4, n - limit, False)
    examples = [("short", "great"), (LONG_PROMPT, "the end was good!")]
    _, report = Encoder(tok, "none", max_length=limit).encode_all(examples)
    assert (report.n_truncated, report.n_response_cut, report.n_dropped, report.longest_tokens) == (1, 0, 0, n)


def test_left_truncation_cuts_the_end_of_a_response_that_cannot_fit(tok):
    full = Encoder(tok, "none", max_length=None).encode(LONG_PROMPT, LONG_PROMPT)
    k = full.n_prompt_tokens
    enc = Encoder(tok, "none", max_length=6, truncation="left")
    x = enc.encode(LONG_PROMPT, LONG_PROMPT)
    if tok.bos_token_id is not None and full.input_ids[0] == tok.bos_token_id:
        assert x.input_ids == full.input_ids[:1] + full.input_ids[k : k + 5]
    else:  # one prompt token stays, so the response's first token is still predicted
        assert x.input_ids == full.input_ids[k - 1 : k + 5]
    assert x.input_ids[-1] != tok.eos_token_id and x.loss_mask == [False] + [True] * 5 and x.response_cut
    _, report = enc.encode_all([(LONG_PROMPT, LONG_PROMPT)])
    assert (report.n_truncated, report.n_response_cut) == (1, 1)


def test_drop_policy_drops_and_counts():
    tok = tl.byte_level_tokenizer()
    enc = Encoder(tok, "none", max_length=12, truncation="drop")
    examples = [("the movie was", "great"), (LONG_PROMPT, "great"), ("the end was", "good!")]
    out, report = enc.encode_all(examples)
    assert report.kept == [0, 2] and len(out) == 2 and (report.n_dropped, report.n_truncated) == (1, 0)
    assert out[1] == enc.encode("the end was", "good!")
    assert report.longest_tokens == len(tok(join_text(LONG_PROMPT, "great")).input_ids) + 1
    assert "1 dropped" in report.summary() and "\n" not in report.summary()
    with pytest.raises(ExampleDropped):
        enc.encode(LONG_PROMPT, "great")


def test_error_policy_is_one_clear_line():
    enc = Encoder(tl.byte_level_tokenizer(), "none", max_length=12, truncation="error")
    with pytest.raises(SpringbackError, match="more than max_length=12") as err:
        enc.encode_all([("the movie was", "great"), (LONG_PROMPT, "great")])
    assert "example 1" in str(err.value) and "\n" not in str(err.value)


def test_nothing_to_learn_is_dropped_or_a_springback_error():
    tok = tl.byte_level_tokenizer()
    tok.eos_token = None  # no EOS: an empty response leaves nothing to learn
    assert tok.eos_token_id is None
    with pytest.raises(SpringbackError, match="no tokens to learn"):
        encode(tok, "the movie was", "", max_length=None)
    out, report = Encoder(tok, "none", None, "drop").encode_all([("the movie was", ""), ("the movie was", "great")])
    assert report.kept == [1] and report.n_dropped == 1
    assert out[0].input_ids == tok("the movie was great").input_ids  # no EOS to append


def test_bad_settings_are_config_errors():
    tok = tl.byte_level_tokenizer()
    with pytest.raises(ConfigError, match="truncation"):
        Encoder(tok, "none", 64, "right")
    with pytest.raises(ConfigError, match="max_length"):
        Encoder(tok, "none", 1)
    with pytest.raises(ConfigError, match="no such file"):
        Encoder(tok, "/nonexistent/template.jinja")


# ---------------------------------------------------------------------- chat templates
CHAT = {
    "llama2_sentencepiece": (lambda: tl.sentencepiece_tokenizer(chat=True), "</s>", 0),
    "chatml_byte_level": (lambda: tl.byte_level_tokenizer(chat=True), "<|im_end|>", 1),
    "llama3_byte_level": (lambda: tl.byte_level_tokenizer(chat=True, bos=True), "<|eot_id|>", 0),
}


def conversation(prompt, response=None):
    conv = [{"role": "user", "content": prompt}]
    return conv + [{"role": "assistant", "content": response}] if response is not None else conv


@pytest.mark.parametrize("name", list(CHAT))
def test_chat_encoding_equals_apply_chat_template(name):
    make, end_of_turn, n_after = CHAT[name]
    tok = make()
    enc = Encoder(tok, "auto", max_length=None)
    assert enc.template_name == "tokenizer:" + hashlib.sha256(tok.chat_template.encode()).hexdigest()[:8]
    eot = tok.convert_tokens_to_ids(end_of_turn)
    assert enc.stop_token_ids[0] == eot and tok.eos_token_id in enc.stop_token_ids
    for prompt, response in PAIRS:
        x = enc.encode(prompt, response)
        assert x.input_ids == tok.apply_chat_template(conversation(prompt, response), return_dict=False)
        if tok.bos_token_id is not None:
            assert x.input_ids.count(tok.bos_token_id) == 1  # the template's BOS, not doubled
        k, n = x.n_prompt_tokens, len(x.input_ids)
        # Learned: the response and its end-of-turn; the template's text after it is not.
        assert x.loss_mask == [False] * k + [True] * (n - k - n_after) + [False] * n_after, (prompt, response)
        assert x.input_ids[n - n_after - 1] == eot
        head = tok.apply_chat_template(conversation(prompt), add_generation_prompt=True, return_dict=False)
        assert enc.encode_prompt(prompt) == head == x.input_ids[:k], (prompt, response)
        fallback = Encoder(tok, "auto", max_length=None)
        fallback.uses_offsets = False
        assert fallback.encode(prompt, response) == x, (prompt, response)


def test_chat_template_from_a_file_adds_the_missing_bos_and_an_eos(tmp_path):
    tok = tl.sentencepiece_tokenizer()  # no template of its own; adds <s> to plain text
    path = tmp_path / "chatml.jinja"
    path.write_text(tl.CHATML_TEMPLATE)
    enc = Encoder(tok, str(path), max_length=None)
    assert enc.template_name == f"file:chatml.jinja:{enc.template_hash}"
    assert enc.template_hash == hashlib.sha256(tl.CHATML_TEMPLATE.encode()).hexdigest()[:8]
    x = enc.encode("how do I fix that?", "sorry, no.")
    rendered = tok.apply_chat_template(conversation("how do I fix that?", "sorry, no."),
                                       chat_template=tl.CHATML_TEMPLATE, return_dict=False)
    # This vocabulary has no special end-of-turn token, so EOS ends the response.
    assert x.input_ids == [tok.bos_token_id] + rendered + [tok.eos_token_id]
    assert enc.stop_token_ids == (tok.eos_token_id,)
    head = tok.apply_chat_template(conversation("how do I fix that?"), chat_template=tl.CHATML_TEMPLATE,
                                   add_generation_prompt=True, return_dict=False)
    assert enc.encode_prompt("how do I fix that?") == [tok.bos_token_id] + head == x.input_ids[: x.n_prompt_tokens]


def test_none_ignores_a_template_and_auto_without_one_is_raw_text():
    chat_tok = tl.byte_level_tokenizer(chat=True)
    raw = Encoder(chat_tok, "none", max_length=None)
    assert raw.template_name == "none" and raw.template_hash == ""
    assert raw.encode("the movie was", "great") == encode(chat_tok, "the movie was", "great", max_length=None)
    plain = Encoder(tl.byte_level_tokenizer(), "auto", max_length=None)
    assert plain.template_name == "none" and plain.stop_token_ids == (plain.tokenizer.eos_token_id,)


def test_a_template_that_fails_to_render_is_one_line(tmp_path):
    path = tmp_path / "bad.jinja"
    path.write_text("{{ raise_exception('only system messages please') }}")
    with pytest.raises(SpringbackError, match="only system messages please"):
        Encoder(tl.byte_level_tokenizer(), str(path)).encode("hi", "there")


def test_chat_truncation_keeps_the_templates_bos_and_the_response():
    tok = tl.sentencepiece_tokenizer(chat=True)
    full = Encoder(tok, "auto", max_length=None).encode(LONG_PROMPT, "sorry, no.")
    k, n = full.n_prompt_tokens, len(full.input_ids)
    x = Encoder(tok, "auto", max_length=n - k + 3).encode(LONG_PROMPT, "sorry, no.")
    assert x.input_ids == full.input_ids[:1] + full.input_ids[k - 2 :]
    assert x.loss_mask == [False] * 3 + full.loss_mask[k:]


def test_chat_truncation_drops_unlearned_template_tokens_first():
    tok = tl.byte_level_tokenizer(chat=True)  # ChatML: a newline follows <|im_end|>
    full = Encoder(tok, "auto", max_length=None).encode("how do I fix that?", "sorry, no.")
    n = len(full.input_ids)
    x = Encoder(tok, "auto", max_length=n - 1).encode("how do I fix that?", "sorry, no.")
    assert x.input_ids == full.input_ids[:-1] and x.loss_mask == full.loss_mask[:-1]
    assert (x.n_cut, x.response_cut, x.n_prompt_tokens) == (1, False, full.n_prompt_tokens)


def test_a_tokenizer_that_appends_eos_gets_no_second_one():
    from transformers import LlamaTokenizer

    base = tl.sentencepiece_tokenizer()
    tok = LlamaTokenizer(vocab=base.get_vocab(), merges=list(tl._sentencepiece_vocab_merges()[1]), add_bos_token=True,
                         add_eos_token=True)
    assert tok("great").input_ids[-1] == tok.eos_token_id
    enc = Encoder(tok, "none", max_length=None)
    x = enc.encode("the movie was", "great")
    assert x.input_ids == tok("the movie was great").input_ids  # its own EOS, once
    assert pieces(tok, x.input_ids[x.n_prompt_tokens :]) == ["▁great", "</s>"] and x.loss_mask[-2:] == [True, True]
    assert enc.encode_prompt("the movie was") == x.input_ids[: x.n_prompt_tokens] == tok("the movie was").input_ids[:-1]


# ---------------------------------------------------------------------- batching
def test_collate_pads_right_and_ignores_unlearned_positions():
    tok = tl.byte_level_tokenizer()
    a, b = encode(tok, "the movie was", "great"), encode(tok, "", "the end was good!")
    batch = collate([a, b], pad=0)
    width = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][0].tolist() == [1] * len(a.input_ids) + [0] * (width - len(a.input_ids))
    assert batch["labels"][0].tolist() == [IGNORE] * 3 + a.input_ids[3:] + [IGNORE] * (width - len(a.input_ids))


# ---------------------------------------------------------------------- the local tokenizers themselves
def test_sentencepiece_wrapper_tokenises_like_sentencepiece():
    sp, tok = tl.sentencepiece_processor(), tl.sentencepiece_tokenizer()
    texts = [t for t in tl.corpus() if not t[0].isspace()] + ["unseen wörds: ŋ ∑ 🙂", "the movie was great"]
    for text in texts:
        assert tok(text).input_ids == [tok.bos_token_id] + sp.encode(text), text
    assert "<0xF0>" in pieces(tok, tok("🙂").input_ids)  # byte fallback


def test_saved_tiny_model_and_tokenizer_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = tl.sentencepiece_tokenizer(chat=True)
    tl.save_model_and_tokenizer(tok, tmp_path)
    tok2 = AutoTokenizer.from_pretrained(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert model.config.vocab_size == len(tok2) == len(tok)
    for enc_a, enc_b in [(Encoder(tok, "auto", None), Encoder(tok2, "auto", None)),
                         (Encoder(tok, "none", None), Encoder(tok2, "none", None))]:
        assert enc_a.template_hash == enc_b.template_hash
        for prompt, response in PAIRS:
            assert enc_a.encode(prompt, response) == enc_b.encode(prompt, response)
    x = Encoder(tok2, "auto", None).encode("the movie was", "great")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([x.input_ids])).logits
    assert logits.shape == (1, len(x.input_ids), len(tok))
