"""Metrics: golden values, matching, order-free label accuracy, evaluate."""

from __future__ import annotations

import math

import pytest
import torch

from engine.metrics import PSNR_CAP_DB, Evaluation, evaluate, label_accuracy, match, mse, psnr, ssim


def _images(b: int = 4, c: int = 1, s: int = 28, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, s, s, generator=g, dtype=dtype)  # (B, C, H, W)


# -----------------------------------------------------------------------------
# golden values


def test_mse_golden() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    ref = x.clone()
    ref[0] = 0.5  # every pixel off by 0.5 -> 0.25
    ref[1, 0, 0, 0] = 1.0  # one pixel of 16 off by 1 -> 1/16
    torch.testing.assert_close(mse(x, ref), torch.tensor([0.25, 1 / 16], dtype=torch.float64))


def test_psnr_constant_offset_is_20_db() -> None:
    x = _images(dtype=torch.float64) * 0.9
    result = psnr(x + 0.1, x)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert result.shape == (4,)
    torch.testing.assert_close(result, torch.full((4,), 20.0, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(psnr(x.float() + 0.1, x.float()), torch.full((4,), 20.0), rtol=0, atol=1e-4)


def test_psnr_data_range() -> None:
    x = _images(dtype=torch.float64) * 200
    torch.testing.assert_close(psnr(x + 2.55, x, data_range=255.0), torch.full((4,), 40.0, dtype=torch.float64))


def test_psnr_identical_is_capped_and_finite() -> None:
    x = _images()
    assert torch.equal(psnr(x, x), torch.full((4,), PSNR_CAP_DB))


@pytest.mark.parametrize("size", [25, 28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_identical_is_one_and_noise_lowers_it(size: int, channels: int) -> None:
    x = _images(c=channels, s=size)
    torch.testing.assert_close(ssim(x, x), torch.ones(4), atol=1e-5, rtol=0)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    scores = ssim(noisy, x)
    assert scores.shape == (4,)
    assert bool((scores < 0.9).all()) and bool((scores > -1).all())


def test_ssim_batch_of_one() -> None:
    x = _images(b=1)
    assert ssim(x, 1 - x).shape == (1,)


@pytest.mark.parametrize("fn", [mse, psnr, ssim, match])
def test_shape_mismatch_rejected(fn) -> None:
    with pytest.raises(ValueError, match="same shape"):
        fn(_images(b=2), _images(b=3))


# -----------------------------------------------------------------------------
# matching and labels


def test_match_recovers_known_permutation() -> None:
    originals = _images(b=6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    recon = originals[perm] + 0.01 * torch.randn(originals.shape, generator=torch.Generator().manual_seed(2))
    order = match(recon, originals)
    assert order.dtype == torch.long and order.shape == (6,)
    torch.testing.assert_close(recon[order], recon[perm.argsort()])
    assert torch.equal(perm[order], torch.arange(6))  # recon[order[i]] is originals[i]


def test_match_prefers_global_optimum_over_greedy() -> None:
    originals = torch.tensor([0.5, 0.6]).view(2, 1, 1, 1)
    recon = torch.tensor([0.55, 0.1]).view(2, 1, 1, 1)
    # greedy (originals[0] takes its nearest, recon[0]) totals 0.0025 + 0.25 = 0.2525;
    # the swap totals 0.16 + 0.0025 = 0.1625, so the optimum pairs originals[0] with recon[1]
    assert match(recon, originals).tolist() == [1, 0]


def test_label_accuracy_is_order_free_multiset_overlap() -> None:
    assert label_accuracy([1, 1, 2], [1, 2, 2]) == pytest.approx(2 / 3)
    assert label_accuracy([2, 1, 0], [0, 1, 2]) == 1.0
    assert label_accuracy(torch.tensor([5, 5]), torch.tensor([5, 5])) == 1.0
    assert label_accuracy([3, 3], [1, 2]) == 0.0
    with pytest.raises(ValueError):
        label_accuracy([1], [])


# -----------------------------------------------------------------------------
# evaluate


def test_evaluate_perfect_permuted_reconstruction() -> None:
    originals = _images(b=3, c=3, s=32)
    perm = torch.tensor([2, 0, 1])
    result = evaluate(originals[perm], originals, predicted_labels=[7, 1, 1], true_labels=torch.tensor([1, 7, 2]))
    assert isinstance(result, Evaluation)
    assert result.psnr == PSNR_CAP_DB and result.ssim == pytest.approx(1.0, abs=1e-5) and result.mse == 0.0
    assert result.order == tuple(perm.argsort().tolist())
    assert result.per_image_psnr == (PSNR_CAP_DB,) * 3
    assert result.label_accuracy == pytest.approx(2 / 3)


def test_evaluate_golden_psnr_and_json_ready_dict() -> None:
    originals = _images(b=2) * 0.9
    result = evaluate(originals + 0.1, originals)
    assert result.psnr == pytest.approx(20.0, abs=1e-3)
    assert all(math.isclose(p, 20.0, abs_tol=1e-3) for p in result.per_image_psnr)
    assert result.label_accuracy is None
    d = result.to_dict()
    assert set(d) == {"psnr", "ssim", "mse", "label_accuracy", "per_image_psnr", "order"}
    assert d["order"] == [0, 1] and isinstance(d["per_image_psnr"], list)


def test_evaluate_clips_reconstruction_to_image_range() -> None:
    originals = torch.ones(1, 1, 28, 28)
    assert evaluate(originals + 5.0, originals).psnr == PSNR_CAP_DB


def test_evaluate_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="same shape"):
        evaluate(_images(s=28), _images(s=32))
    with pytest.raises(ValueError, match="same shape"):
        evaluate(_images(c=1), _images(c=3))


def test_a_diverged_reconstruction_is_scored_not_raised() -> None:
    originals = torch.rand(2, 1, 28, 28)
    recon = originals.clone()
    recon[0, 0, :5] = float("nan")  # a run that blew up part-way
    result = evaluate(recon, originals)
    assert math.isfinite(result.psnr) and result.psnr < 100
