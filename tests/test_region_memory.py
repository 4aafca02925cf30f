"""The regions' attention masks on the DiT families (Flux.1, Chroma, SD3, Z-Image, Flux.2 Klein, Qwen-Image) against the memory
the device has: the plans the jobs build, for published sizes, checked with the available memory given as a number
(as ``test_family_memory`` gives free memory); and ``device.available_bytes`` read from a kernel's meminfo."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import OUT_OF_MEMORY, ProtocolError
from server import device
from server.core import Region
from server.families import regions, regions_chroma, regions_klein, regions_qwen, regions_sd3, regions_zimage

MB, GB = 10**6, 10**9
BF16 = 2


def areas(count: int, side: int) -> list:
    """``count`` regions, each a vertical band of a ``side`` px square picture."""
    out = []
    for i in range(count):
        mask = np.zeros((side, side), np.uint8)
        mask[:, i * side // count : (i + 1) * side // count] = 255
        out.append(Region(f"region {i}", mask))
    return out


def flux_plan(count: int, side: int) -> regions.RegionPlan:
    """A Flux.1 job's plan: 512 T5 tokens for the job's prompt and each region's."""
    return regions.plan(areas(count, side), [regions.MAX_SEQUENCE] * (count + 1), side, side)


def test_sixteen_regions_at_1024_px_fit_a_card_with_a_few_gb_free_and_the_mask_is_what_the_plan_says():
    plan = flux_plan(16, 1024)
    assert (plan.text_tokens, plan.weights.shape[1]) == (17 * 512, 4096)
    assert plan.mask_elements() * BF16 == 2 * 12800**2 * BF16  # 330 MB a copy: the mask kept and one copy
    plan.check_memory(BF16, 4 * GB, 16)  # fits: nothing raised


def test_a_mask_larger_than_its_share_of_the_memory_is_refused_naming_regions_size_and_what_fits():
    plan = flux_plan(16, 1024)
    with pytest.raises(ProtocolError) as err:
        plan.check_memory(BF16, 1 * GB, 16)
    e = err.value
    assert (e.code, e.field) == (OUT_OF_MEMORY, "regions")
    text = str(e)
    assert "16 region(s)" in text and "8704 text + 4096 image tokens" in text and "655 MB" in text
    assert "500 MB" in text and "1.00 GB available" in text
    side = int(text.split("at most about ")[1].split("x")[0])
    smaller = flux_plan(16, side)  # the size it names fits the same memory, 16 px more on each side does not
    smaller.check_memory(BF16, 1 * GB, 16)
    with pytest.raises(ProtocolError):
        flux_plan(16, side + 16).check_memory(BF16, 1 * GB, 16)


def test_the_mask_grows_with_the_square_of_the_picture():
    small, large = flux_plan(2, 512), flux_plan(2, 2048)
    assert large.weights.shape[1] == 16 * small.weights.shape[1]
    small.check_memory(BF16, 512 * MB, 2)
    with pytest.raises(ProtocolError, match="2 region"):
        large.check_memory(BF16, 512 * MB, 2)  # 1,536 text + 16,384 image tokens: 1.28 GB


def test_text_too_long_for_any_picture_says_to_use_fewer_regions():
    with pytest.raises(ProtocolError, match="leaves no room for a picture: use fewer regions or shorter prompts"):
        flux_plan(16, 256).check_memory(BF16, 100 * MB, 16)


def test_each_family_s_plan_counts_its_own_masks():
    weights = regions.token_weights(areas(4, 1024), 1024, 1024)
    qwen = regions_qwen.QwenPlan([40] * 5, weights)
    assert qwen.mask_elements() == regions_qwen.QWEN_MASK_COPIES * (200 + 4096) ** 2
    zimage = regions_zimage.ZImagePlan([[20] * 5, [3] * 5], weights, rope=None)  # prompt and negative captions
    assert zimage.text_tokens == 5 * 32
    assert zimage.mask_elements() == (2 + 3) * (4096 + 160) ** 2
    for plan in (qwen, zimage):
        plan.check_memory(BF16, 8 * GB, 4)
        with pytest.raises(ProtocolError, match="4 region"):
            plan.check_memory(BF16, 100 * MB, 4)
    klein = regions_klein.KleinPlan([512] * 5, weights)
    klein.check_memory(BF16, 800 * MB, 4)  # 177 MB
    with pytest.raises(ProtocolError, match=r"2560 text \+ 8192 image tokens"):  # a reference picture's tokens
        klein.check_memory(BF16, 800 * MB, 4, extra=4096)  # 462 MB


def test_available_memory_is_read_from_the_kernels_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:          200000 kB\nMemAvailable:    3000000 kB\n")
    assert device.available_bytes("cpu", str(meminfo)) == 3000000 * 1024
    assert device.available_bytes("cpu", str(tmp_path / "missing")) > 0  # all of the RAM where it cannot be read


def test_the_plan_before_the_prompts_are_encoded_is_exact_on_flux_and_klein_and_no_larger_elsewhere():
    """``early_plan``: the check before any prompt is encoded. Flux's T5 and Klein's Qwen3 texts are 512 tokens each,
    so it is the job's plan; Qwen-Image's and Z-Image's texts are their real tokens, so it counts one a text."""
    band = areas(16, 1024)
    assert regions.early_plan({}, band, 1024, 1024).mask_elements() == flux_plan(16, 1024).mask_elements()
    with pytest.raises(ProtocolError, match="16 region"):
        regions.early_plan({}, band, 1024, 1024).check_memory(BF16, 1 * GB, 16)
    klein = regions_klein.early_plan({}, band, 1024, 1024)
    assert klein.lengths == [512] * 17
    qwen = regions_qwen.early_plan({}, band, 1024, 1024)
    assert qwen.mask_elements() == regions_qwen.QWEN_MASK_COPIES * (17 + 4096) ** 2
    guided = regions_zimage.early_plan({"guidance_scale": 4.0}, band, 1024, 1024)
    assert guided.lengths == [[1] * 17] * 2 and guided.text_tokens == 17 * 32
    assert len(regions_zimage.early_plan({"guidance_scale": 0.0}, band, 1024, 1024).lengths) == 1


def test_chroma_and_sd3_plans_are_exact_before_their_prompts_are_encoded_and_count_their_copies():
    """Chroma pads every prompt to 512 T5 tokens and SD3 to CLIP's 77 + T5's 256, so the check before the prompts are
    encoded is the job's own; each holds three masks while a layer runs (Chroma: joined to the call's key mask; SD3:
    reordered to [image | text])."""
    band = areas(4, 1024)
    chroma = regions_chroma.early_plan({}, band, 1024, 1024)
    assert chroma.lengths == [512] * 5
    assert chroma.mask_elements() == regions_chroma.CHROMA_MASK_COPIES * (5 * 512 + 4096) ** 2 == 3 * 6656**2
    sd3 = regions_sd3.early_plan({}, band, 1024, 1024)
    assert sd3.lengths == [333] * 5 and isinstance(sd3, regions_sd3.SD3Plan)
    assert sd3.mask_elements() == 3 * (5 * 333 + 4096) ** 2
    for plan in (chroma, sd3):
        plan.check_memory(BF16, 2 * GB, 4)
        with pytest.raises(ProtocolError, match="4 region"):
            plan.check_memory(BF16, 200 * MB, 4)
