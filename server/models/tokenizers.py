"""The real CLIP BPE tokenizer, shipped with the server so prompts tokenize exactly as with the original models, offline.

``server/configs/clip-tokenizer/{vocab.json,merges.txt}`` were derived once from OpenAI CLIP's
``bpe_simple_vocab_16e6.txt.gz`` (shipped in the ``open_clip_torch`` wheel) by ``derive_vocab``:
``python -m server.models.tokenizers path/to/bpe_simple_vocab_16e6.txt.gz server/configs/clip-tokenizer``.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

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


@lru_cache(maxsize=1)
def _vocab_and_merges() -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """The shipped vocabulary and merge list, read once per process (each tokenizer copies them into its own BPE)."""
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]  # after "#version: 0.2"
    return vocab, [tuple(line.split()) for line in lines if line]


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A new real CLIP tokenizer of its own (SD1.5 and SDXL's first encoder pad with ``<|endoftext|>``, SDXL's second
    with ``!``): its own, because textual-inversion embeddings add tokens to it. Built from the vocabulary read once
    per process: ~60 ms of CPU a tokenizer, where a deep copy of a built one takes ~140 ms (AMD EPYC)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=list(merges), pad_token=pad_token, model_max_length=MAX_LENGTH)


_MADE: Dict[tuple, object] = {}
"""Tokenizers ``folder_tokenizer`` made, by class and file contents (the last ``_MADE_KEPT``); never handed out."""
_MADE_KEPT = 8


def folder_tokenizer(class_name: str, folder: Path):
    """A new tokenizer of ``transformers``' class ``class_name`` as ``from_pretrained(folder)`` makes it: a copy of
    the one made once per process for that class and those file contents, wherever they lie (~0.1 CPU-s a copy, where
    ``from_pretrained`` reads and converts the files again each time, 0.3-0.45 CPU-s; AMD EPYC)."""
    import transformers

    files = sorted(f for f in Path(folder).iterdir() if f.is_file())
    key = (class_name, tuple((f.name, hashlib.sha1(f.read_bytes()).hexdigest()) for f in files))
    made = _MADE.get(key)
    if made is None:
        made = getattr(transformers, class_name).from_pretrained(str(folder), local_files_only=True)
        while len(_MADE) >= _MADE_KEPT:
            _MADE.pop(next(iter(_MADE)), None)
        _MADE[key] = made
    return copy.deepcopy(made)


def folder_tokenizers(folder: Path) -> dict:
    """The tokenizers of a diffusers folder by their part name (``tokenizer``, ``tokenizer_2``...), each from
    ``folder_tokenizer``: those its ``model_index.json`` names as ``transformers`` classes and whose sub-folder it has,
    to pass to the pipeline's ``from_pretrained`` (which loads the others itself)."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    out = {}
    for part, spec in index.items():
        if not part.startswith("tokenizer") or not isinstance(spec, list) or len(spec) != 2:
            continue
        library, class_name = spec
        if library == "transformers" and class_name and (Path(folder) / part).is_dir():
            out[part] = folder_tokenizer(class_name, Path(folder) / part)
    return out


if __name__ == "__main__":
    derive_vocab(Path(sys.argv[1]), Path(sys.argv[2]))
