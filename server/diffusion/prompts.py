"""Prompts as users write them: ``(word:1.2)``, ``((word))``, ``[word]``, ``\\(`` escapes, ``BREAK``, and
``<lora:name:weight>`` tags; encoded on top of the pipeline's own text encoders, 75 tokens per chunk, any length.

A weight moves each token's embedding away from (weight > 1) or towards (weight < 1) the embedding an empty prompt
has at that position, as ComfyUI does; unlike rescaling by the mean, this stays finite for any weights and model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from protocol.errors import UNSUPPORTED, ProtocolError

ROUND_UP = 1.1
SQUARE_DOWN = 1 / 1.1
CHUNK = 75  # tokens per 77-token window, without BOS/EOS

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>", re.IGNORECASE)
_TOKEN = re.compile(r"\\[\\()\[\]]|\\|\(|\)|\[|\]|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|[^\\()\[\]:]+|:")


@dataclass
class LoraTag:
    name: str
    weight: float


def extract_loras(prompt: str) -> Tuple[str, List[LoraTag]]:
    """Remove ``<lora:name:weight>`` tags from a prompt; returns the rest and the tags (weight 1 when omitted)."""
    tags: List[LoraTag] = []

    def take(m: re.Match) -> str:
        try:
            weight = float(m.group(2)) if m.group(2) is not None else 1.0
        except ValueError:
            raise ValueError(f"the LoRA tag {m.group(0)!r} has a weight that is not a number") from None
        tags.append(LoraTag(m.group(1).strip(), weight))
        return ""

    return _LORA_TAG.sub(take, prompt), tags


def parse_weights(text: str) -> List[Tuple[str, float]]:
    """Split a prompt into (text, weight) runs. ``BREAK`` comes back as ("BREAK", -1).

    ``(a)`` ×1.1, ``((a))`` ×1.21, ``[a]`` ÷1.1, ``(a:1.5)`` ×1.5, ``\\(`` a literal parenthesis; unbalanced
    brackets are closed at the end, as other UIs do.
    """
    out: List[List] = []
    round_stack: List[int] = []
    square_stack: List[int] = []

    def scale(start: int, factor: float) -> None:
        for run in out[start:]:
            run[1] *= factor

    for m in _TOKEN.finditer(text):
        tok, number = m.group(0), m.group(1)
        if tok.startswith("\\") and len(tok) == 2:
            out.append([tok[1], 1.0])
        elif tok == "(":
            round_stack.append(len(out))
        elif tok == "[":
            square_stack.append(len(out))
        elif number is not None and round_stack:
            scale(round_stack.pop(), float(number))
        elif tok == ")" and round_stack:
            scale(round_stack.pop(), ROUND_UP)
        elif tok == "]" and square_stack:
            scale(square_stack.pop(), SQUARE_DOWN)
        else:
            for i, part in enumerate(re.split(r"\s*\bBREAK\b\s*", tok)):
                if i:
                    out.append(["BREAK", -1.0])
                if part:
                    out.append([part, 1.0])
    for start in round_stack:
        scale(start, ROUND_UP)
    for start in square_stack:
        scale(start, SQUARE_DOWN)
    merged: List[List] = []
    for run in out:
        if merged and merged[-1][1] == run[1] and run[1] != -1.0:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(t, w) for t, w in merged] or [("", 1.0)]


def plain_text(prompt: str) -> str:
    """The prompt's text without weight syntax (for pipelines that encode prompts themselves)."""
    return "".join(text for text, _ in parse_weights(prompt))


def token_chunks(tokenizer, runs: List[Tuple[str, float]], convert=None) -> List[Tuple[List[int], List[float]]]:
    """Tokens and weights in chunks of at most 75; a chunk ends at ``BREAK``. ``convert`` expands
    textual-inversion triggers (diffusers' ``maybe_convert_prompt``)."""
    chunks: List[Tuple[List[int], List[float]]] = [([], [])]
    for text, weight in runs:
        if weight == -1.0:
            chunks.append(([], []))
            continue
        if convert is not None:
            text = convert(text, tokenizer)
        ids = tokenizer(text, add_special_tokens=False, truncation=False, max_length=10**6).input_ids  # chunked below
        for tid in ids:
            if len(chunks[-1][0]) >= CHUNK:
                chunks.append(([], []))
            chunks[-1][0].append(tid)
            chunks[-1][1].append(weight)
    return [c for c in chunks if c[0]] or [([], [])]


def _pad(tokenizer, ids: List[int], weights: List[float]) -> Tuple[List[int], List[float]]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id]
    weights = [1.0] + weights + [1.0]
    ids += [pad] * (CHUNK + 2 - len(ids))
    weights += [1.0] * (CHUNK + 2 - len(weights))
    return ids, weights


def _encode_prompts(encoder, tokenizer, prompts_chunks, layer: int, device, normalize: bool = False):
    """For each prompt's chunks: (hidden states [1, 77*n, dim], pooled output of its first chunk or None), from one
    encoder call on a batch of every chunk of every prompt (and the empty prompt, when a weight needs it). ``layer``
    0 takes the encoder's output; ``n`` > 0 the hidden states ``n`` from the end, passed through the final layer norm
    when ``normalize`` (SD1.5's CLIP skip, as diffusers)."""
    import torch

    padded = [[_pad(tokenizer, ids, weights) for ids, weights in chunks] for chunks in prompts_chunks]
    weighted = any(w != 1 for chunks in padded for _, weights in chunks for w in weights)
    rows = [ids for chunks in padded for ids, _ in chunks] + ([_pad(tokenizer, [], [])[0]] if weighted else [])
    out = encoder(torch.tensor(rows, device=device), output_hidden_states=True)
    pooled = getattr(out, "text_embeds", None)
    if layer <= 0:
        hidden = out[0]
    elif layer > len(out.hidden_states):
        raise ProtocolError(
            UNSUPPORTED,
            f"CLIP skip reaches past the text encoder's {len(out.hidden_states) - 1} "
            "layers: choose a smaller clip_skip",
            field="params.clip_skip",
        )
    else:
        hidden = out.hidden_states[-layer]
        if normalize:
            hidden = getattr(encoder, "text_model", encoder).final_layer_norm(hidden)  # transformers 4 / 5
    empty = hidden[-1:] if weighted else None
    results, row = [], 0
    for chunks in padded:
        parts = []
        for n, (_, weights) in enumerate(chunks):
            z = hidden[row + n : row + n + 1]
            w = torch.tensor(weights, device=device, dtype=z.dtype)[None, :, None]
            parts.append(empty + (z - empty) * w if (w != 1).any() else z)
        results.append((torch.cat(parts, dim=1), pooled[row : row + 1] if pooled is not None else None))
        row += len(chunks)
    return results


@dataclass
class Conditioning:
    """What the pipelines take instead of prompt strings."""

    prompt_embeds: "object"
    negative_prompt_embeds: "object"
    pooled_prompt_embeds: Optional["object"] = None
    negative_pooled_prompt_embeds: Optional["object"] = None

    def kwargs(self) -> dict:
        out = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            out["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            out["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return out


def _same_length(a: list, b: list) -> None:
    while len(a) < len(b):
        a.append(([], []))
    while len(b) < len(a):
        b.append(([], []))


def skipped_layers(clip_skip: int) -> int:
    """Painters' CLIP skip (0/1 = none, 2 = penultimate, like A1111 and ComfyUI) as diffusers' ``clip_skip``
    (layers skipped before the one used: 0 = none)."""
    return max(0, clip_skip - 1)


def encode(pipe, prompt: str, negative: str, device, clip_skip: int = 0) -> Conditioning:
    """Weighted, chunked embeddings of ``prompt`` and ``negative`` for an SD1.5-class or SDXL-class pipeline;
    ``clip_skip`` in painters' convention (diffusers' meaning: SD1.5 takes hidden state ``-(skip + 1)``, SDXL, already
    on the penultimate layer, ``-(skip + 2)``)."""
    import torch

    convert = getattr(pipe, "maybe_convert_prompt", None)
    pos_runs, neg_runs = parse_weights(prompt), parse_weights(negative)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    skip = skipped_layers(clip_skip)
    with torch.no_grad():
        if not sdxl:
            pos = token_chunks(pipe.tokenizer, pos_runs, convert)
            neg = token_chunks(pipe.tokenizer, neg_runs, convert)
            _same_length(pos, neg)
            layer = skip + 1 if skip else 0
            (p, _), (n, _) = _encode_prompts(pipe.text_encoder, pipe.tokenizer, [pos, neg], layer, device, True)
            return Conditioning(p, n)
        encoders = [(pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2)]
        results = [[token_chunks(tok, runs, convert) for _, tok in encoders] for runs in (pos_runs, neg_runs)]
        for _ in range(2):  # both prompts and both encoders must agree on the number of chunks
            for i in range(2):
                _same_length(results[0][i], results[1][i])
                _same_length(results[i][0], results[i][1])
        # per encoder: both prompts in one batch
        encoded = [
            _encode_prompts(enc, tok, [results[0][i], results[1][i]], skip + 2, device)
            for i, (enc, tok) in enumerate(encoders)
        ]
        embeds = []
        for k in range(2):  # positive, negative
            pooled = None
            for _, pool in (e[k] for e in encoded):
                pooled = pool if pool is not None else pooled
            embeds.append((torch.cat([e[k][0] for e in encoded], dim=-1), pooled))
        (p, p_pool), (n, n_pool) = embeds
        if not negative.strip() and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
            n, n_pool = torch.zeros_like(n), torch.zeros_like(n_pool)
        return Conditioning(p, n, p_pool, n_pool)
