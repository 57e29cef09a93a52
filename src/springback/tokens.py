"""Text → token ids: how a (prompt, response) example becomes the ids a model sees.

Every path that feeds a model — training, exact scores, code lengths, KL, sampling — encodes
through this module, so training and measurement see exactly the same ids. Build one
:class:`Encoder` per run stage from (tokenizer, chat_template, max_length, truncation) and use it
for training examples (:meth:`Encoder.encode_all`) and sampling prompts
(:meth:`Encoder.encode_prompts`) alike.

**One text, one tokenisation.** An example is tokenised as one string, never as two separately
tokenised halves: SentencePiece tokenisers (Llama, Gemma, Mistral) would otherwise insert a
spurious ``▁`` at the seam and byte-level BPE (GPT-2, Llama-3, Qwen) would lose or double the
space. Without a chat template the string is :func:`join_text` (prompt, one space, response);
with one, it is the rendered (user, assistant) conversation.

**Where the response starts.** The response side begins at the first token that covers any
character after the prompt's own text (character offsets from fast tokenisers). A token that
straddles the seam — e.g. ``Ġgreat`` from prompt ``"was "`` + response ``"great"`` — belongs to
the response: the model must produce it, so it is learned, and the prompt side stays a prefix
that a sampler can feed. Tokenisers without offsets fall back to the longest common prefix of
the prompt's own ids and the example's ids.

**What carries loss.** ``loss_on="response"``: the response side, ending with EOS (raw text;
not doubled if the tokenizer appends one) or the template's end-of-turn token (chat: the first
special token after the response's text; EOS is appended if the template writes none). Tokens
a template renders after its end-of-turn (e.g. ChatML's newline) stay in the ids, unlearned, as
``apply_chat_template`` gives them. ``loss_on="all"``: every token after the first. Position 0
never carries loss (nothing precedes it).

**Sampling prompts** (:meth:`Encoder.encode_prompt`) are the prompt side of a training encoding,
so a sampler continues exactly where training's response began.

**Long examples** (``max_length``), chosen per stage: ``"left"`` first drops unlearned template
tokens at the end, then cuts the prompt from the left (keeping a leading BOS), keeping the
response and its end marker; if the response alone does not fit, its end (and the EOS) is cut
too, and counted. ``"drop"`` drops the example and counts it. ``"error"`` stops with a
:class:`~springback.errors.SpringbackError`. Sampling prompts are never truncated.

:func:`encode` (one raw-text example) and :func:`collate` (right-padded batch tensors with
:data:`IGNORE` where no loss is taken) are the small functions most callers need.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import ConfigError, SpringbackError

IGNORE = -100  # label of positions that carry no loss (PyTorch's cross-entropy default)
TRUNCATION_POLICIES = ("left", "drop", "error")
LOSS_ON = ("response", "all")
# A stand-in response for encoding a prompt alone (sampling): the prompt side of (prompt, PROBE)
# is what training sees before any response that starts with a letter, the common case.
PROBE_RESPONSE = "a"


def join_text(prompt: str, response: str) -> str:
    """The one rule that joins a prompt and a response into one text.

    One space goes between them, unless either is empty, the prompt ends with whitespace or
    the response starts with whitespace (then they are simply concatenated). Every part of
    springback that turns a (prompt, response) into one text uses this function.
    """
    if not prompt or not response or prompt[-1].isspace() or response[0].isspace():
        return prompt + response
    return prompt + " " + response


@dataclasses.dataclass
class Encoded:
    """A tokenised example: ``input_ids``, a per-token loss mask (True = learned), where the
    response side starts (``n_prompt_tokens``) and what truncation removed."""

    input_ids: list[int]
    loss_mask: list[bool]
    n_prompt_tokens: int = 0
    n_cut: int = 0
    response_cut: bool = False  # truncation removed part of the response or its end marker


@dataclasses.dataclass
class EncodingReport:
    """What encoding a list of examples did; print :meth:`summary` before training."""

    n_examples: int
    n_kept: int
    n_truncated: int  # kept, with tokens cut (prompt from the left, maybe the response's end)
    n_response_cut: int  # of those, how many lost the end of their response (and its EOS)
    n_dropped: int  # too long under truncation="drop", or nothing left to learn
    n_prompt_mismatch: int  # prompt side differs from encode_prompt(prompt): sampling sees other ids
    longest_tokens: int  # the longest example before truncation (0 when there are none)
    max_length: int | None
    truncation: str
    template: str
    kept: list[int]  # indices of the kept examples, in order

    def summary(self) -> str:
        """One line for logs: counts, longest example and the settings that produced them."""
        limit = "none" if self.max_length is None else str(self.max_length)
        line = (f"encoded {self.n_kept}/{self.n_examples} examples (template {self.template}, max_length {limit}, "
                f"truncation {self.truncation}): {self.n_truncated} truncated ({self.n_response_cut} lost the end of "
                f"their response), {self.n_dropped} dropped; longest {self.longest_tokens} tokens")
        if self.n_prompt_mismatch:
            line += (f"; {self.n_prompt_mismatch} examples' prompt ids differ from their sampling prompt's "
                     f"(whitespace at the seam)")
        return line


class ExampleDropped(SpringbackError):
    """An example was dropped (too long under ``truncation="drop"``, or nothing left to learn)."""


@dataclasses.dataclass
class _Split:
    """One example's full ids before truncation: prompt side ``ids[:k]``, learned response
    tokens ``ids[k:k + n_learn]``, then unlearned template tokens to the end."""

    ids: list[int]
    k: int
    n_learn: int


_Offsets = list[list[tuple[int, int]]]  # per example, per token: (first char, end char) in its text


def _pair(example: Any) -> tuple[str, str]:
    if hasattr(example, "prompt") and hasattr(example, "response"):
        return example.prompt, example.response
    prompt, response = example
    return prompt, response


def _template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


class Encoder:
    """Encodes training/scoring examples and sampling prompts the same way for one tokenizer.

    ``chat_template``: ``"auto"`` (the tokenizer's template if it has one, else raw text),
    ``"none"`` (raw text, :func:`join_text`) or a path to a Jinja template file. In chat mode the
    prompt is the user message and the response the assistant message; the sampling prompt is
    the user turn with the generation prompt. The template decides about BOS; only if it omits
    the BOS the tokenizer puts on plain text is one added (never a second one).
    ``max_length``: tokens per example (None = no limit); ``truncation``: see the module doc.
    """

    def __init__(self, tokenizer: Any, chat_template: str = "none", max_length: int | None = 64,
                 truncation: str = "left"):
        if truncation not in TRUNCATION_POLICIES:
            raise ConfigError(f"truncation must be one of {', '.join(TRUNCATION_POLICIES)}, got {truncation!r}")
        if max_length is not None and (type(max_length) is not int or max_length < 2):
            raise ConfigError(f"max_length must be an integer >= 2 (or None for no limit), got {max_length!r}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.template, self.template_name = self._resolve_template(tokenizer, chat_template)
        self.template_hash = _template_hash(self.template) if self.template is not None else ""
        # Offsets need a fast (Rust) tokenizer; slow ones use the common-prefix fallback.
        self.uses_offsets = bool(getattr(tokenizer, "is_fast", False))

    # ------------------------------------------------------------------ settings
    @staticmethod
    def _resolve_template(tokenizer: Any, chat_template: str) -> tuple[str | None, str]:
        if chat_template == "none":
            return None, "none"
        if chat_template == "auto":
            if not getattr(tokenizer, "chat_template", None):
                return None, "none"
            try:
                text = tokenizer.get_chat_template()
            except ValueError as exc:  # several named templates and no default
                raise ConfigError(f"chat_template 'auto': {str(exc).splitlines()[0]}") from None
            return text, f"tokenizer:{_template_hash(text)}"
        path = Path(chat_template).expanduser()
        if not path.is_file():
            raise ConfigError(f"chat_template must be 'auto', 'none' or a Jinja template file; no such file: "
                              f"'{chat_template}'")
        text = path.read_text(encoding="utf-8")
        return text, f"file:{path.name}:{_template_hash(text)}"

    @cached_property
    def _special_ids(self) -> frozenset[int]:
        """Ids of special tokens: the named ones and added tokens marked special."""
        tok = self.tokenizer
        ids = set(getattr(tok, "all_special_ids", []) or [])
        for i, added in (getattr(tok, "added_tokens_decoder", {}) or {}).items():
            if getattr(added, "special", False):
                ids.add(int(i))
        return frozenset(ids)

    @cached_property
    def _n_added(self) -> tuple[int, int]:
        """How many special tokens the tokenizer puts before and after plain text, e.g. (1, 0)
        for Llama's BOS, (0, 0) for GPT-2."""
        with_sp = list(self.tokenizer("a").input_ids)
        without = list(self.tokenizer("a", add_special_tokens=False).input_ids)
        for head in range(len(with_sp) - len(without) + 1):
            if with_sp[head : head + len(without)] == without:
                return head, len(with_sp) - len(without) - head
        return 0, 0

    @cached_property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Token ids that end a response, the primary one first: the template's end-of-turn
        token (chat mode, when it has one), then EOS. A sampler stops at any of them."""
        stops: list[int] = []
        if self.template is not None:
            split = self._split_chat([("a", "a")])[0]
            eot = split.ids[split.k + split.n_learn - 1] if split.n_learn else None
            if eot is not None and eot in self._special_ids:
                stops.append(int(eot))
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos not in stops:
            stops.append(int(eos))
        return tuple(stops)

    def describe(self) -> dict[str, Any]:
        """The settings that determine the ids, for records and cache keys."""
        return {"template": self.template_name, "template_hash": self.template_hash, "max_length": self.max_length,
                "truncation": self.truncation, "boundary": "offsets" if self.uses_offsets else "common-prefix"}

    # ------------------------------------------------------------------ public encoding
    def encode(self, prompt: str, response: str, loss_on: str = "response") -> Encoded:
        """One example; raises :class:`ExampleDropped` where ``encode_all`` would drop it."""
        split = self._split([(prompt, response)])[0]
        return self._finish(split, loss_on, where="example")

    def encode_all(self, examples: Sequence[Any], loss_on: str = "response") -> tuple[list[Encoded], EncodingReport]:
        """Encode every example (objects with ``.prompt``/``.response`` or (prompt, response)
        pairs) and report what truncation did; dropped examples are left out (see ``report.kept``).

        Raises :class:`SpringbackError` for an example too long under ``truncation="error"`` and,
        unless the policy is ``"drop"``, for an example with nothing left to learn.
        """
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be 'response' or 'all', got {loss_on!r}")
        pairs = [_pair(e) for e in examples]
        splits = self._split(pairs)
        prompts = list(dict.fromkeys(p for p, _ in pairs))
        alone = dict(zip(prompts, self.encode_prompts(prompts)))
        out: list[Encoded] = []
        kept: list[int] = []
        n_truncated = n_response_cut = n_dropped = n_mismatch = 0
        for i, (split, (prompt, _)) in enumerate(zip(splits, pairs)):
            n_mismatch += split.ids[: split.k] != alone[prompt]
            try:
                enc = self._finish(split, loss_on, where=f"example {i}")
            except ExampleDropped:
                n_dropped += 1
                continue
            n_truncated += enc.n_cut > 0
            n_response_cut += enc.response_cut
            out.append(enc)
            kept.append(i)
        report = EncodingReport(
            n_examples=len(pairs), n_kept=len(out), n_truncated=n_truncated, n_response_cut=n_response_cut,
            n_dropped=n_dropped, n_prompt_mismatch=n_mismatch,
            longest_tokens=max((len(s.ids) for s in splits), default=0), max_length=self.max_length,
            truncation=self.truncation, template=self.template_name, kept=kept)
        return out, report

    def encode_prompt(self, prompt: str) -> list[int]:
        """The ids a sampler feeds for ``prompt``: the prompt side of a training encoding.

        The prompt side of (prompt, :data:`PROBE_RESPONSE`): it equals
        ``encode(prompt, r).input_ids[:n_prompt_tokens]`` whenever the prompt does not end in
        whitespace and ``r`` starts with a non-space character. Otherwise a tokenizer may cut
        the seam differently per response; :meth:`encode_all` counts such examples
        (``n_prompt_mismatch``). Never truncated. In chat mode: the user turn and the
        generation prompt.
        """
        return self.encode_prompts([prompt])[0]

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode_prompt` for many prompts (one batched tokeniser call)."""
        return [s.ids[: s.k] for s in self._split([(p, PROBE_RESPONSE) for p in prompts])]

    # ------------------------------------------------------------------ splitting
    def _split(self, pairs: Sequence[tuple[str, str]]) -> list[_Split]:
        return self._split_chat(pairs) if self.template is not None else self._split_raw(pairs)

    def _tokenise(self, texts: list[str], add_special_tokens: bool) -> tuple[list[list[int]], _Offsets | None]:
        if not texts:
            return [], []
        if self.uses_offsets:
            enc = self.tokenizer(texts, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
            return [list(x) for x in enc["input_ids"]], [[tuple(o) for o in x] for x in enc["offset_mapping"]]
        enc = self.tokenizer(texts, add_special_tokens=add_special_tokens)
        return [list(x) for x in enc["input_ids"]], None

    @staticmethod
    def _first_after(offsets: Sequence[tuple[int, int]], start: int, stop: int, boundary: int) -> int:
        """Index of the first token in ``[start, stop)`` that ends after character ``boundary``
        (``stop`` if none). Trimmed offsets only move a token's start, so its end is reliable."""
        for i in range(start, stop):
            if offsets[i][1] > boundary:
                return i
        return stop

    @staticmethod
    def _common_prefix(own: list[list[int]], ids: list[list[int]], n_tail: int) -> list[int]:
        """Fallback without offsets: length of the common prefix of each prompt's own ids
        (less the ``n_tail`` specials a tokenizer appends) and its example's ids."""
        out = []
        for p, full in zip(own, ids):
            p = p[: len(p) - n_tail]
            n = 0
            while n < min(len(p), len(full)) and p[n] == full[n]:
                n += 1
            out.append(n)
        return out

    def _split_raw(self, pairs: Sequence[tuple[str, str]]) -> list[_Split]:
        texts = [join_text(p, r) for p, r in pairs]
        ids, offsets = self._tokenise(texts, add_special_tokens=True)
        n_head, n_tail = self._n_added
        if offsets is None:
            ks = self._common_prefix(self._tokenise([p for p, _ in pairs], True)[0], ids, n_tail)
        else:
            # Specials the tokenizer adds around the text (BOS; EOS where it adds one) have no
            # characters: the head ones are prompt side, the tail ones response side.
            ks = [self._first_after(off, min(n_head, len(x)), len(x) - n_tail, len(p))
                  for x, off, (p, _) in zip(ids, offsets, pairs)]
        eos = self.tokenizer.eos_token_id
        out = []
        for x, k in zip(ids, ks):
            if eos is not None and (not x or x[-1] != eos):  # no second EOS if the tokenizer added one
                x = x + [eos]
            out.append(_Split(x, k, len(x) - k))
        return out

    def _render(self, prompt: str, response: str | None) -> str:
        """The conversation as text: with the assistant turn, or ending in the generation prompt."""
        conv = [{"role": "user", "content": prompt}]
        if response is not None:
            conv.append({"role": "assistant", "content": response})
        try:
            return self.tokenizer.apply_chat_template(conv, chat_template=self.template, tokenize=False,
                                                      add_generation_prompt=response is None)
        except Exception as exc:  # noqa: BLE001 - Jinja errors (incl. raise_exception) become one line
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SpringbackError(f"chat template {self.template_name} cannot render a (user, assistant) "
                                  f"conversation: {why}") from None

    @cached_property
    def _bos_on_plain_text(self) -> bool:
        bos = self.tokenizer.bos_token_id
        return bos is not None and self._n_added[0] >= 1 and self.tokenizer("a").input_ids[0] == bos

    def _chat_ids(self, texts: list[str]) -> tuple[list[list[int]], _Offsets | None]:
        """Rendered conversations → ids (and offsets), as ``apply_chat_template`` tokenises them
        (no special tokens added), plus the BOS the tokenizer puts on plain text if the
        template left it out — never a second one."""
        ids, offsets = self._tokenise(texts, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        if self._bos_on_plain_text:
            for i, x in enumerate(ids):
                if not x or x[0] != bos:
                    ids[i] = [bos] + x
                    if offsets is not None:
                        offsets[i] = [(0, 0)] + offsets[i]
        return ids, offsets

    def _split_chat(self, pairs: Sequence[tuple[str, str]]) -> list[_Split]:
        texts, bounds, ends = [], [], []
        for prompt, response in pairs:
            head, full = self._render(prompt, None), self._render(prompt, response)
            if not full.startswith(head):
                raise SpringbackError(f"chat template {self.template_name}: the generation prompt is not a prefix of "
                                      f"the rendered conversation, so the response's start is unknown")
            texts.append(full)
            bounds.append(len(head))
            # Where the response's text ends (templates may trim it): the end-of-turn comes after.
            body = response.strip()
            at = full.find(body, len(head)) if body else -1
            ends.append(at + len(body) if at >= 0 else len(head))
        ids, offsets = self._chat_ids(texts)
        if offsets is None:
            ks = self._common_prefix(self._chat_ids([self._render(p, None) for p, _ in pairs])[0], ids, 0)
        else:
            ks = [self._first_after(off, 0, len(x), b) for x, off, b in zip(ids, offsets, bounds)]
        out = []
        eos = self.tokenizer.eos_token_id
        for i, (x, k) in enumerate(zip(ids, ks)):
            eot = None
            for j in range(k, len(x)):
                if x[j] in self._special_ids and (offsets is None or offsets[i][j][0] >= ends[i]):
                    eot = j
                    break
            if eot is None:  # the template ends the turn with no special token: EOS ends it
                if eos is not None:
                    x = x + [eos]
                out.append(_Split(x, k, len(x) - k))
            else:
                out.append(_Split(x, k, eot + 1 - k))
        return out

    # ------------------------------------------------------------------ truncation and mask
    def _finish(self, split: _Split, loss_on: str, where: str) -> Encoded:
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be 'response' or 'all', got {loss_on!r}")
        ids, k = split.ids, split.k
        n, limit = len(ids), self.max_length
        # The response proper: what must survive truncation (with "all", the template's tail too).
        n_resp = split.n_learn if loss_on == "response" else n - k
        if loss_on == "response":
            mask = [False] * k + [True] * split.n_learn + [False] * (n - k - split.n_learn)
        else:
            mask = [True] * n
        keep = list(range(n))
        if limit is not None and n > limit:
            if self.truncation == "error":
                raise SpringbackError(f"{where} has {n} tokens, more than max_length={limit} (truncation='error'); "
                                      f"raise max_length or set truncation to 'left' or 'drop'")
            if self.truncation == "drop":
                raise ExampleDropped(f"{where} dropped: {n} tokens > max_length={limit} (truncation='drop')")
            keep = self._keep_left(ids, k, n_resp, limit)
        out_ids = [ids[j] for j in keep]
        out_mask = [mask[j] for j in keep]
        out_mask[0] = False  # nothing precedes position 0, so it is never predicted
        if not any(out_mask):
            if self.truncation == "drop":
                raise ExampleDropped(f"{where} dropped: nothing left to learn")
            limit_txt = f" after truncation to {limit} tokens" if len(keep) < n else ""
            raise SpringbackError(f"{where} has no tokens to learn{limit_txt} (response {n - k} tokens); "
                                  f"raise max_length or use truncation='drop'")
        kept = set(keep)
        return Encoded(out_ids, out_mask, n_prompt_tokens=sum(1 for j in keep if j < k), n_cut=n - len(keep),
                       response_cut=any(j not in kept for j in range(k, k + n_resp)))

    def _keep_left(self, ids: list[int], k: int, n_resp: int, limit: int) -> list[int]:
        """Positions kept by ``truncation="left"``.

        Unlearned template tokens after the response go first (nothing depends on them); then
        the prompt loses tokens from its left, after a leading BOS; the response's end is cut
        only when it cannot fit beside one token of context for its first token.
        """
        if k + n_resp <= limit:
            return list(range(limit))
        bos = self.tokenizer.bos_token_id
        head = [0] if k >= 1 and bos is not None and ids[0] == bos else []
        body = list(range(len(head), k))
        resp = list(range(k, k + n_resp))
        room = limit - len(head) - len(resp)
        n_body = max(min(len(body), room), 0 if head else min(1, len(body)))
        return head + body[len(body) - n_body :] + resp[: limit - len(head) - n_body]


# ---------------------------------------------------------------------- plain functions
def encode(tokenizer: Any, prompt: str, response: str, loss_on: str = "response", max_length: int | None = 64,
           truncation: str = "left") -> Encoded:
    """Token ids of ``join_text(prompt, response)`` + EOS and which tokens carry loss (raw text,
    no chat template); see :class:`Encoder` for chat templates, batches and sampling prompts.

    ``loss_on="response"`` learns the response and EOS only; ``"all"`` learns every token
    after the first (pre-training on plain text).
    """
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be 'response' or 'all', got {loss_on!r}")
    return Encoder(tokenizer, "none", max_length, truncation).encode(prompt, response, loss_on)


def pad_id(tokenizer: Any) -> int:
    """The id used to pad batches (pad, else 0; padded positions are masked everywhere)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def collate(batch: Sequence[Encoded], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE where no loss). [B, T]"""
    width = max(len(e.input_ids) for e in batch)
    # Padded Python rows, then one tensor each: per-example tensors and masked assignment cost
    # ~5% of a tiny model's training step (profile of `springback reproduce`).
    ids, attn, labels = [], [], []
    for e in batch:
        fill = width - len(e.input_ids)
        ids.append(list(e.input_ids) + [pad] * fill)
        attn.append([1] * len(e.input_ids) + [0] * fill)
        labels.append([t if m else IGNORE for t, m in zip(e.input_ids, e.loss_mask)] + [IGNORE] * fill)
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(attn, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long)}
