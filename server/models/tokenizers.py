"""The real CLIP BPE tokenizer, shipped with the server so prompts tokenize exactly as with the original models, offline.

``server/configs/clip-tokenizer/{vocab.json,merges.txt}`` were derived once from OpenAI CLIP's
``bpe_simple_vocab_16e6.txt.gz`` (shipped in the ``open_clip_torch`` wheel) by ``derive_vocab``:
``python -m server.models.tokenizers path/to/bpe_simple_vocab_16e6.txt.gz server/configs/clip-tokenizer``.
"""

from __future__ import annotations

import gzip
import json
import sys
from functools import lru_cache
from pathlib import Path

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "configs" / "clip-tokenizer"
VOCAB_SIZE = 49408
MAX_LENGTH = 77


def _byte_symbols() -> dict:
    """GPT-2/CLIP's reversible byte → printable unicode character table, in CLIP's order (printable bytes first)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return table


def derive_vocab(bpe_gz: Path, out_dir: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` (Hugging Face layout) from CLIP's gzipped BPE merge list."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : VOCAB_SIZE - 512 - 2 + 1]]
    symbols = list(_byte_symbols().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE:
        raise ValueError(f"derived {len(tokens)} tokens from {bpe_gz}, expected {VOCAB_SIZE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )


@lru_cache(maxsize=4)
def _load(pad_token: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=str(TOKENIZER_DIR / "vocab.json"),
        merges=str(TOKENIZER_DIR / "merges.txt"),
        pad_token=pad_token,
        model_max_length=MAX_LENGTH,
    )


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A fresh copy of the real CLIP tokenizer (SD1.5 and SDXL's first encoder pad with ``<|endoftext|>``, SDXL's
    second with ``!``). A copy, because textual-inversion embeddings add tokens to it."""
    import copy

    return copy.deepcopy(_load(pad_token))


if __name__ == "__main__":
    derive_vocab(Path(sys.argv[1]), Path(sys.argv[2]))
