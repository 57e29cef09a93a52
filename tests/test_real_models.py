"""Real Hugging Face models: tiny random Llama / GPT-2 / GPT-NeoX checkpoints saved locally.

Loading, batched KV-cache generation against ``model.generate``, pad-token handling, LoRA and
gradient checkpointing through the one fine-tuning entry point, an experiment end to end on
a local model with real-format data, and one clear line + exit status 2 per bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_tiny import imdb_rows, save, tokenizer, write
from springback.cli import main
from springback.config import ModelConfig, TrainConfig
from springback.errors import SpringbackError
from springback.measure.sampling import sample
from springback.models import load_model

FAMILIES = ["llama", "gpt2", "neox"]
PROMPTS = ["review of the red river :", "the", "review of the last winter : the story was great and the acting"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved tiny model per family (2 layers so attention over the cache matters)."""
    root = tmp_path_factory.mktemp("models")
    return {k: save(k, root / k, seed=3, layers=2) for k in FAMILIES}


@pytest.mark.parametrize("kind", FAMILIES)
def test_load_and_greedy_generation_matches_generate(saved, kind):
    model, tok = load_model(str(saved[kind]))
    assert type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))
    # Prompts of different lengths share one left-padded batch; GPT-2's learned absolute
    # positions make wrong position ids show up at once.
    _, ids, pidx = sample(model, tok, PROMPTS, 1, seed=0, temperature=0.0, max_new_tokens=10)
    assert pidx == [0, 1, 2]
    for i, prompt in enumerate(PROMPTS):
        enc = tok(prompt, return_tensors="pt")
        ref = model.generate(**enc, do_sample=False, max_new_tokens=10, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)[0, enc.input_ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert ids[i] == ref, f"{kind} prompt {i}"


def test_tokenizer_without_pad_token_gets_eos(tmp_path):
    d = save("gpt2", tmp_path / "nopad", pad=False)
    assert json.loads((d / "tokenizer_config.json").read_text()).get("pad_token") in (None, "")
    model, tok = load_model(str(d))
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.eos_token_id
    texts, _, _ = sample(model, tok, PROMPTS[:2], 2, seed=1, max_new_tokens=4)
    assert len(texts) == 4


def test_dtype_choice(saved):
    model, _ = load_model(str(saved["llama"]), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def _examples(tmp_path: Path, n: int = 24):
    from springback.data import load_examples

    return load_examples(str(write(imdb_rows(n), tmp_path / "r.jsonl")), "imdb", prefix_words=4)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
def test_lora_trains_only_the_adapter_and_merges_in_place(saved, tmp_path, kind):
    from springback.pipeline import finetune

    model, tok = load_model(str(saved[kind]))
    before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    result = finetune(model, tok, _examples(tmp_path), TrainConfig(lr=1e-2, batch_size=8), ModelConfig(lora_r=4),
                      seed=0, progress=False)
    assert len(result.loss) == 3
    after = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # the caller's object holds the merged weights
    assert sorted(after) == sorted(before), "LoRA layers must be merged away"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    targets = {"llama": ("q_proj", "v_proj"), "gpt2": ("c_attn",), "neox": ("query_key_value",)}[kind]
    assert changed and all(any(t in k for t in targets) for k in changed), changed
    assert all(p.requires_grad for p in model.parameters())


def test_full_finetuning_and_gradient_checkpointing_agree(saved, tmp_path):
    from springback.pipeline import finetune

    ex = _examples(tmp_path)
    params = []
    for ckpt in (False, True):
        model, tok = load_model(str(saved["llama"]))
        finetune(model, tok, ex, TrainConfig(lr=1e-2, batch_size=8), ModelConfig(gradient_checkpointing=ckpt),
                 seed=0, progress=False)
        params.append(torch.cat([p.detach().cpu().flatten() for p in model.parameters()]))
        assert not getattr(model, "is_activation_checkpointing", False)
    base, _ = load_model(str(saved["llama"]))
    start = torch.cat([p.detach().flatten() for p in base.parameters()])
    assert not torch.allclose(params[0], start)  # full fine-tuning moved the weights
    assert torch.allclose(params[0], params[1], atol=1e-6)  # checkpointing changes memory, not results


# ----------------------------------------------------------------------------- experiments end to end


@pytest.mark.slow
def test_rebound_end_to_end_on_a_local_model_with_real_data(saved, tmp_path, capsys):
    train = write(imdb_rows(64, seed=1), tmp_path / "train.parquet")
    ev = write(imdb_rows(16, seed=2), tmp_path / "eval.csv")
    sets = ["seeds=[0]", "n_pos=[8,16]", "n_neg=[0,8,16]", f"model.path={saved['gpt2']}", f"data.aligned={train}",
            f"data.eval={ev}", "data.prefix_words=4", "data.n_reference=4", "data.scorers=[vader,refusal]",
            "world.n_eval_prompts=4", "measure.n_samples=2", "measure.max_new_tokens=6", "align.batch_size=8",
            "opposing.batch_size=8"]
    args = ["run", "rebound", "--out", str(tmp_path / "out"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    import springback

    df = springback.load_results(run_dir)
    assert set(df.stage) == {"base", "opposing"} and set(df.world) == {"data:train"}
    assert sorted(df[df.stage == "opposing"].n_opposing.unique()) == [0, 8, 16]
    for col in ("score_S", "pi_pos", "kl_to_base", "score", "score_vader", "score_refusal", "agree_vader~refusal",
                "kappa_vader~refusal"):
        assert col in df.columns, col
    assert df[df.stage == "opposing"].kl_to_base.notna().all()
    result = springback.load_result(run_dir)
    assert [c["id"] for c in result["claims"]] == ["rebound.fast_then_slow", "rebound.more_alignment_falls_faster",
                                                   "rebound.kl_return"]
    assert any("score_S" in f for f in result["figures"])


# ----------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, saved):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    d = tmp_path_factory.mktemp("bad")
    tok = tokenizer()
    clf = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=80, pad_token_id=tok.pad_token_id,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    clf.save_pretrained(str(d / "clf"))
    tok.save_pretrained(str(d / "clf"))
    (d / "empty.jsonl").write_text("")
    return {
        "model": str(saved["llama"]),
        "clf": str(d / "clf"),
        "train": str(write(imdb_rows(20), d / "train.jsonl")),
        "eval": str(write(imdb_rows(8, seed=3), d / "eval.jsonl")),
        "nolabel": str(write([{"text": r["text"]} for r in imdb_rows(8)], d / "nolabel.csv")),
        "empty": str(d / "empty.jsonl"),
    }


def _rebound(p: dict, tmp: Path, **over: str) -> list[str]:
    sets = {"model.path": p["model"], "data.aligned": p["train"], "data.eval": p["eval"], "seeds": "[0]",
            "n_pos": "[4]", "n_neg": "[0,4]", "world.n_eval_prompts": "2", "data.prefix_words": "4"}
    sets.update(over)
    args = ["run", "rebound", "--out", str(tmp / "out"), "--quiet"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing model path", "model path not found"),
        ("not a causal LM", "not a causal language model"),
        ("missing columns", "missing column"),
        ("empty dataset", "empty"),
        ("hub id while offline", "hub is not reachable"),
        ("hub dataset while offline", "hub is not reachable"),
        ("label map does not match", "does not match the labels"),
        ("data without a model", "also set model.path"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(bad_inputs, tmp_path, capsys, monkeypatch, case, match):
    import springback.models as models

    monkeypatch.setattr(models, "hub_reachable", lambda timeout_s=3.0: False)  # as on an offline machine
    p = bad_inputs
    args = {
        "missing model path": _rebound(p, tmp_path, **{"model.path": str(tmp_path / "no-such-model")}),
        "not a causal LM": _rebound(p, tmp_path, **{"model.path": p["clf"]}),
        "missing columns": _rebound(p, tmp_path, **{"data.aligned": p["nolabel"], "data.format": "imdb"}),
        "empty dataset": _rebound(p, tmp_path, **{"data.aligned": p["empty"]}),
        "hub id while offline": _rebound(p, tmp_path, **{"model.path": "some-org/some-model"}),
        "hub dataset while offline": _rebound(p, tmp_path, **{"data.aligned": "some-org/some-dataset"}),
        "label map does not match": _rebound(p, tmp_path, **{"data.scorers": f"[classifier:{p['clf']}]",
                                                              "data.label_map": "POS=1,NEG=0"}),
        "data without a model": _rebound(p, tmp_path, **{"model.path": ""}),
    }[case]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("springback: error:") and "\n" not in err, err
    assert match in err, err


def test_load_model_errors_directly(bad_inputs, tmp_path, monkeypatch):
    import springback.models as models

    with pytest.raises(SpringbackError, match="not a causal language model"):
        load_model(bad_inputs["clf"])
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(SpringbackError, match="cannot load model config"):
        load_model(str(tmp_path / "empty-dir"))
    monkeypatch.setattr(models, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(SpringbackError, match="not a local directory and the Hugging Face hub is not reachable"):
        load_model("meta-llama/Llama-2-7b-hf")


# ----------------------------------------------------------------------------- honest loads


def test_pickled_weights_need_an_explicit_opt_in(saved, tmp_path):
    """Safetensors only by default: a checkpoint with only pytorch_model.bin is refused in one line,
    and loads with allow_pickle (the user's decision for a checkpoint they trust)."""
    import shutil

    from springback.errors import SpringbackError

    from safetensors.torch import load_file

    model, tok = load_model(str(saved["llama"]))
    d = tmp_path / "pickled"
    shutil.copytree(saved["llama"], d)  # then swap its weights for the pickled format older checkpoints ship
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    with pytest.raises(SpringbackError, match="only pickled weights.*allow_pickle"):
        load_model(str(d))
    again, _ = load_model(str(d), allow_pickle=True)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    shutil.rmtree(d)


def test_missing_weights_are_an_error_not_a_random_init(saved, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from springback.errors import SpringbackError

    d = tmp_path / "truncated"
    shutil.copytree(saved["llama"], d)
    w = load_file(str(d / "model.safetensors"))
    dropped = sorted(k for k in w if "layers.0.mlp" in k)[0]
    del w[dropped]
    save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SpringbackError, match="weights missing from") as err:
        load_model(str(d))
    assert dropped in str(err.value) and "\n" not in str(err.value)
    w2 = load_file(str(saved["llama"] / "model.safetensors"))
    w2["extra.weight"] = torch.zeros(2)
    save_file(w2, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SpringbackError, match="weights unexpected in"):
        load_model(str(d))


def test_files_springback_writes_are_readable_by_others(tmp_path):
    import os
    import stat

    from springback.io import RecordLog, atomic_write_json, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
        RecordLog(tmp_path / "records.jsonl").append_cell("c", [{"x": 1}])
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "records.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
