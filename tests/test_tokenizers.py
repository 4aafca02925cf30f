"""The shipped tokenizers (``server/models/tokenizers.py``, ``server/families/loading.py``): each call gives a tokenizer
of its own (textual-inversion embeddings add tokens to one), a folder's is what ``from_pretrained`` makes, and T5 tokenizes as the original T5 v1.1 does."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from server.families.loading import t5_tokenizer
from server.models.tokenizers import clip_tokenizer, folder_tokenizer

PROMPT = "a photo of an astronaut riding a horse"


@pytest.mark.parametrize("make", [clip_tokenizer, t5_tokenizer], ids=["clip", "t5"])
def test_each_tokenizer_is_its_own_and_a_token_added_to_one_is_not_in_the_next(make):
    first = make()
    size = len(first)
    first.add_tokens(["<embedding-word>"])
    second = make()
    assert len(first) == size + 1
    assert len(second) == size and "<embedding-word>" not in second.get_vocab()
    assert second(PROMPT).input_ids == make()(PROMPT).input_ids


def test_the_shipped_t5_tokenizer_is_the_real_t5_v1_1_one():
    tok = t5_tokenizer()
    assert len(tok) == 32100
    assert tok(PROMPT).input_ids == [3, 9, 1202, 13, 46, 30059, 7494, 3, 9, 4952, 1]
    assert (tok.pad_token_id, tok.eos_token_id, tok.model_max_length) == (0, 1, 512)


def test_a_folder_tokenizer_is_what_from_pretrained_makes_of_the_folder_as_it_is_now(tmp_path):
    folder = tmp_path / "tokenizer"
    clip_tokenizer("!").save_pretrained(folder)
    made, direct = folder_tokenizer("CLIPTokenizer", folder), CLIPTokenizer.from_pretrained(folder)
    assert type(made) is CLIPTokenizer and made.pad_token_id == direct.pad_token_id == 0
    assert made(PROMPT, padding="max_length").input_ids == direct(PROMPT, padding="max_length").input_ids
    made.add_tokens(["<embedding-word>"])
    assert len(folder_tokenizer("CLIPTokenizer", folder)) == len(direct)
    clip_tokenizer().save_pretrained(folder)  # other contents in the same place: made again
    assert folder_tokenizer("CLIPTokenizer", folder).pad_token_id == 49407
