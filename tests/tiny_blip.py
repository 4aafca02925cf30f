"""A tiny random-weight BLIP captioner of the real architecture (``BlipForConditionalGeneration``) with its processor:
a BERT word-piece tokenizer built from a small vocabulary written here (with BLIP's ``[DEC]`` start token) and BLIP's
image processor at 32 px, saved as a transformers folder the way Salesforce publishes its captioning models."""

from __future__ import annotations

from pathlib import Path

from factory import _cached, _torch

NAME = "blip-captioner-1"
WORDS = (
    "a an the of on in with and two cat dog woman man sitting standing red blue green sofa bench park table "
    "picture photo painting tree sky water house car flower window street"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IMAGE_SIZE = 32


def _vocab() -> list:
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    return SPECIAL + WORDS + pieces + ["[DEC]"]


def build(folder: Path, seed: int = 0) -> None:
    """Write the tiny captioner into ``folder``."""
    torch = _torch()
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = _vocab()
    tokenizer = BertTokenizer(
        vocab={piece: i for i, piece in enumerate(vocab)}, do_lower_case=True, bos_token="[DEC]", model_max_length=64
    )
    images = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(images, tokenizer).save_pretrained(folder)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        projection_dim=32,
        bos_token_id=vocab.index("[DEC]"),
        sep_token_id=vocab.index("[SEP]"),
        pad_token_id=0,
        eos_token_id=vocab.index("[SEP]"),
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=32,
    )
    config = BlipConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=32,
        image_text_hidden_size=32,
        architectures=["BlipForConditionalGeneration"],
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # spread the logits so the greedy words depend on the picture
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(folder)


def captioner_folder() -> Path:
    """The cached tiny captioner folder (built once)."""
    return _cached(NAME, build)


def install(models: Path, name: str = "tiny-blip") -> Path:
    """A copy of the tiny captioner as ``models/captioners/<name>/``."""
    import shutil

    target = models / "captioners" / name
    shutil.copytree(captioner_folder(), target, ignore=shutil.ignore_patterns(".complete"))
    return target
