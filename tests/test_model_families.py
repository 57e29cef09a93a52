"""The architectures researchers bring (Llama, Qwen2, Gemma, GPT-NeoX/Pythia, GPT-2), saved as
Hugging Face checkpoints with a real tokenizer type and loaded the way a run loads them.

Each differs where a pipeline can go wrong: BOS or none (Qwen2 and GPT-NeoX add none), tied or
separate output embeddings, rotary vs absolute positions (GPT-2: left padding needs explicit
position ids), Gemma's scaled embeddings. For each we check against an oracle: HF ``generate``
for greedy sampling, one-prompt-at-a-time runs for batching with left and right padding, and the
tokenizer's own ids for what the model is fed.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentencepiece")
from tokenizers_local import byte_level_tokenizer, sentencepiece_tokenizer  # noqa: E402

from springback.measure.logprobs import completion_logprobs  # noqa: E402
from springback.measure.sampling import sample  # noqa: E402
from springback.tokens import join_text  # noqa: E402

FAMILIES = ["llama-sp", "qwen2-bpe", "gemma-sp", "gpt_neox-bpe", "gpt2-bpe"]
PROMPTS = ["the film was", "USER: tell me about the story and the actors and the ending of that long film . ASSISTANT:",
           "Ünïcödé réview — “quoted” ☃ was"]
COMPLETIONS = ["great", "awful and dull", "ok"]


def _config(family: str, tok, hidden: int = 32):
    import transformers as tf

    eos = tok.eos_token_id
    ids = {"bos_token_id": tok.bos_token_id if tok.bos_token_id is not None else eos, "eos_token_id": eos,
           "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else eos}
    v = len(tok)
    if family == "llama":
        return tf.LlamaConfig(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **ids)
    if family == "qwen2":  # small Qwen2 checkpoints tie the output embedding to the input one
        return tf.Qwen2Config(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                              tie_word_embeddings=True, **ids)
    if family == "gemma":  # embeddings scaled by sqrt(hidden), tied output, head_dim given
        return tf.GemmaConfig(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
                              **ids)
    if family == "gpt_neox":  # Pythia: separate output embedding, partial rotary
        return tf.GPTNeoXConfig(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=256, rotary_pct=0.25,
                                tie_word_embeddings=False, **ids)
    return tf.GPT2Config(vocab_size=v, n_embd=hidden, n_layer=2, n_head=4, n_positions=256, **ids)


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    """(family, path, model, tokenizer): saved with safetensors, loaded by springback."""
    from transformers import AutoModelForCausalLM

    from springback.models import load_model

    family, kind = request.param.split("-")
    tok = sentencepiece_tokenizer() if kind == "sp" else byte_level_tokenizer()
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(_config(family, tok))
    with torch.no_grad():  # random init of this size is near-uniform: make the greedy path non-trivial
        for p in model.parameters():
            p.mul_(3.0)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    loaded, ltok = load_model(str(path))
    assert type(loaded).__name__ == type(model).__name__
    ref = dict(model.state_dict())
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())  # every weight, tied ones too
    return family, path, loaded.eval(), ltok


def test_fed_ids_are_the_tokenizers_own(checkpoint):
    """What a scored pair feeds the model: the tokenizer's ids of the whole text plus EOS; a BOS
    only where the tokenizer adds one (Llama, Gemma), never invented (Qwen2, GPT-NeoX, GPT-2)."""
    from springback.tokens import Encoder

    family, _, _, tok = checkpoint
    enc = Encoder(tok, "none", 128, "left")
    for p in PROMPTS:
        for c in COMPLETIONS:
            e = enc.encode(p, c)
            whole = tok(join_text(p, c)).input_ids
            assert list(e.input_ids) == whole + [tok.eos_token_id]
            assert (whole[0] == tok.bos_token_id) == (family in ("llama", "gemma"))
            n_resp = sum(e.loss_mask)
            assert n_resp >= 2 and list(e.loss_mask[-n_resp:]) == [1] * n_resp  # response tokens + EOS


def test_scores_do_not_depend_on_batching_or_padding(checkpoint):
    """log p(completion | prompt) for all pairs in one right-padded batch equals each pair alone,
    and equals a plain HF forward pass summed over the completion's tokens."""
    family, _, model, tok = checkpoint
    together = completion_logprobs(model, tok, PROMPTS, COMPLETIONS, max_length=128)
    for i, p in enumerate(PROMPTS):
        for j, c in enumerate(COMPLETIONS):
            alone = completion_logprobs(model, tok, [p], [c], max_length=128)[0, 0]
            assert torch.allclose(together[i, j], alone, atol=1e-4), (family, p, c)
    p, c = PROMPTS[0], COMPLETIONS[1]
    ids = tok(join_text(p, c)).input_ids + [tok.eos_token_id]
    n_prompt = len(tok(p).input_ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    oracle = sum(logp[t - 1, ids[t]] for t in range(n_prompt, len(ids)))
    assert abs(float(together[0, 1]) - float(oracle)) < 1e-4


def test_greedy_sampling_with_left_padding_equals_hf_generate(checkpoint):
    """A nucleus of ~0 keeps only the argmax: our KV-cached loop over a left-padded batch must
    pick, token for token, what HF ``generate`` picks for each prompt alone."""
    family, _, model, tok = checkpoint
    texts, ids, owner = sample(model, tok, PROMPTS, 1, seed=0, top_p=1e-9, max_new_tokens=8, batch_size=3)
    assert owner == [0, 1, 2]
    for p, got in zip(PROMPTS, ids):
        prompt = torch.tensor([tok(p).input_ids])
        with torch.no_grad():
            ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=8,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0, prompt.size(1):]
        ref = ref.tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert got == ref, (family, p)
    # The same samples whatever the batch size (each row has its own random stream).
    again = sample(model, tok, PROMPTS, 2, seed=3, max_new_tokens=8, batch_size=1)[1]
    assert again == sample(model, tok, PROMPTS, 2, seed=3, max_new_tokens=8, batch_size=6)[1]


def test_a_training_step_moves_the_loaded_model(checkpoint):
    """One SFT step through springback's loop on a loaded family: every trained weight is finite,
    the loss on the training examples falls, and tied embeddings stay tied."""
    import copy

    from springback.config import TrainConfig
    from springback.pipeline import finetune
    from springback.tokens import Encoder
    from springback.worlds.base import ALIGNED, Example

    family, _, model, tok = checkpoint
    model = copy.deepcopy(model)
    examples = [Example(p, c, ALIGNED) for p in PROMPTS for c in COMPLETIONS]
    encoded, _ = Encoder(tok, "none", 128, "left").encode_all(examples)
    before = completion_logprobs(model, tok, PROMPTS, COMPLETIONS, max_length=128).sum()
    finetune(model, tok, encoded * 4, TrainConfig(batch_size=9, lr=3e-3), seed=0, shuffle=True, progress=False)
    after = completion_logprobs(model, tok, PROMPTS, COMPLETIONS, max_length=128).sum()
    assert after > before and all(torch.isfinite(p).all() for p in model.parameters())
    out, inp = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert (out.data_ptr() == inp.data_ptr()) == bool(model.config.tie_word_embeddings)
