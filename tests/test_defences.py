"""Defences: golden accountant values, DP clipping and noise, compression ratios, DLG stopped by noise."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine.attacks import create_attack
from engine.data import select_batch
from engine.defences import (
    add_gaussian_noise, clip_per_example, clip_update, dp_aggregate, dp_sgd_update, epsilon, noise_for_epsilon,
    prune_gradient, quantise, sign_compress, top_k, with_update,
)
from engine.defences.dp import global_norm, per_example_gradients
from engine.defences.secret_sharing import P, combine, combine_secret, split, split_secret
from engine.defences.secure_aggregation import (
    SecureAggregationError, decode, encode, flatten, secure_aggregate, secure_sum,
    unflatten,
)
from engine.leakage import batch_gradient, client_update, leak_update, model_parameters
from engine.metrics import evaluate
from engine.models import create_model


@pytest.fixture(scope="module")
def one_digit(mnist):
    """One bundled digit, DLG's LeNet, and the plain FedSGD leak of that digit."""
    batch = select_batch(mnist, 1, seed=0)
    model = create_model("lenet", seed=0)
    return batch, model, leak_update(model, [(batch.images, batch.labels)])


def dlg_psnr(leak, batch, iterations: int = 200) -> float:
    """PSNR (dB) of DLG's reconstruction after `iterations` gradient evaluations (200 recover a plain digit)."""
    return evaluate(create_attack("dlg", iterations=iterations).run(leak).images, batch.images).psnr


# --- accountant ---------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant, golden", [("rdp", 2.10), ("prv", 1.84)])
def test_accountant_golden_values(accountant, golden) -> None:
    assert epsilon(1.0, 0.01, 1000, 1e-5, accountant) == pytest.approx(golden, abs=0.02)


@pytest.mark.parametrize("sigma", [1e200, 1e-300])
def test_epsilon_of_a_sigma_past_float_range_is_a_value_error(sigma: float) -> None:
    with pytest.raises(ValueError, match="beyond what the accountant can compute"):  # not OverflowError
        epsilon(sigma, 0.01, 1, 1e-5)


def test_more_noise_spends_less_epsilon_and_more_steps_more() -> None:
    assert epsilon(2.0, 0.01, 1000, 1e-5) < epsilon(1.0, 0.01, 1000, 1e-5) < epsilon(1.0, 0.01, 2000, 1e-5)


def test_reverse_accountant_gives_back_the_epsilon() -> None:
    sigma = noise_for_epsilon(2.0, 0.01, 1000, 1e-5, "rdp")
    assert epsilon(sigma, 0.01, 1000, 1e-5, "rdp") == pytest.approx(2.0, abs=0.02)
    assert epsilon(sigma, 0.01, 1000, 1e-5, "rdp") <= 2.0


@pytest.mark.parametrize(
    "args, message",
    [
        ((0.0, 0.01, 1000, 1e-5), "noise_multiplier"),
        ((-1.0, 0.01, 1000, 1e-5), "noise_multiplier"),
        ((1.0, 0.0, 1000, 1e-5), "sample_rate"),
        ((1.0, 1.5, 1000, 1e-5), "sample_rate"),
        ((1.0, 0.01, 1000, 0.0), "delta"),
        ((1.0, 0.01, 1000, 1.0), "delta"),
        ((1.0, 0.01, 0, 1e-5), "steps"),
        ((1.0, 0.01, 2.5, 1e-5), "steps"),
    ],
)
def test_accountant_rejects_bad_parameters(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        epsilon(*args)


def test_reverse_accountant_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_for_epsilon(0.0, 0.01, 1000, 1e-5)
    with pytest.raises(ValueError, match="unknown accountant 'gdp'.*rdp, prv"):
        noise_for_epsilon(1.0, 0.01, 1000, 1e-5, "gdp")


# --- differential privacy -----------------------------------------------------------------------


def test_per_example_gradients_match_one_backward_pass_per_example(mnist, lenet) -> None:
    batch = select_batch(mnist, 3, seed=2)
    per_example = per_example_gradients(lenet, batch.images, batch.labels)
    params = model_parameters(lenet)
    for i in range(3):
        oracle = batch_gradient(lenet, params, batch.images[i : i + 1], batch.labels[i : i + 1])
        for name, g in oracle.items():
            torch.testing.assert_close(per_example[name][i], g, rtol=1e-4, atol=1e-6)


def test_clipping_bounds_every_examples_norm_and_keeps_its_direction() -> None:
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.1, 1.0, 5.0, 50.0])
    grads = {"w": torch.randn(4, 3, 5, generator=g) * scales.view(4, 1, 1), "b": torch.randn(4, 7, generator=g)}
    clipped = clip_per_example(grads, max_norm=2.0)
    before, after = global_norm(grads, dim0=True), global_norm(clipped, dim0=True)
    assert bool((after <= 2.0 + 1e-5).all())
    small = before <= 2.0
    torch.testing.assert_close(after[small], before[small])  # inside the ball: untouched
    torch.testing.assert_close(after[~small], torch.full_like(after[~small], 2.0))  # outside: onto the sphere
    ratio = clipped["w"] / grads["w"]
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio))  # one factor per example


def test_noise_has_std_sigma_times_c_and_is_seeded() -> None:
    zeros = {"w": torch.zeros(200, 500)}
    noisy = add_gaussian_noise(zeros, noise_multiplier=2.0, max_norm=0.5, generator=torch.Generator().manual_seed(3))
    assert float(noisy["w"].std()) == pytest.approx(1.0, rel=0.02)  # 100,000 draws: std error ~0.2 %
    assert abs(float(noisy["w"].mean())) < 0.01
    again = add_gaussian_noise(zeros, 2.0, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(noisy["w"], again["w"])


def test_dp_sgd_without_noise_or_active_clipping_is_the_plain_mean_gradient(mnist, lenet) -> None:
    batch = select_batch(mnist, 4, seed=1)
    plain = batch_gradient(lenet, model_parameters(lenet), batch.images, batch.labels)
    update = dp_sgd_update(lenet, batch.images, batch.labels, noise_multiplier=0.0, max_norm=1e6)
    for name, g in plain.items():
        torch.testing.assert_close(update[name], g, rtol=1e-4, atol=1e-6)


def test_dp_fedavg_clips_each_client_then_averages_with_noise_of_std_zs_over_n() -> None:
    g = torch.Generator().manual_seed(0)
    updates = [{"w": torch.randn(1000, generator=g) * s} for s in (0.01, 1.0, 10.0)]
    assert float(global_norm(clip_update(updates[2], 1.0))) == pytest.approx(1.0)
    torch.testing.assert_close(clip_update(updates[0], 1.0)["w"], updates[0]["w"])
    clean = dp_aggregate(updates, noise_multiplier=0.0, max_norm=1.0)
    expected = sum(clip_update(u, 1.0)["w"] for u in updates) / 3
    torch.testing.assert_close(clean["w"], expected)
    noisy = dp_aggregate(updates, noise_multiplier=3.0, max_norm=1.0, generator=torch.Generator().manual_seed(1))
    assert float((noisy["w"] - clean["w"]).std()) == pytest.approx(3.0 * 1.0 / 3, rel=0.1)


def test_dlg_fails_against_strong_dp_noise(one_digit) -> None:
    """sigma = 1, C = 1: the usual DP-SGD setting. (Without noise DLG gets > 25 dB: see the next test.)"""
    batch, model, leak = one_digit
    noisy = dp_sgd_update(model, batch.images, batch.labels, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert dlg_psnr(with_update(leak, noisy), batch) < 12


def test_psnr_falls_as_sigma_rises_on_a_fixed_seed(one_digit) -> None:
    """C = 30 lies above this gradient's norm (about 21.6), so only the noise changes."""
    batch, model, leak = one_digit
    curve = []
    for sigma in (0.0, 1e-4, 1e-2):
        update = dp_sgd_update(model, batch.images, batch.labels, sigma, 30.0, torch.Generator().manual_seed(0))
        curve.append(dlg_psnr(with_update(leak, update), batch))
    assert curve[0] > 25 and curve[2] < 12
    assert curve[0] > curve[1] > curve[2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: clip_per_example({"w": torch.ones(2, 3)}, 0.0), "max_norm"),
        (lambda: clip_update({"w": torch.ones(3)}, -1.0), "max_norm"),
        (lambda: add_gaussian_noise({"w": torch.ones(3)}, -0.5, 1.0), "noise_multiplier"),
        (lambda: dp_aggregate([], 1.0, 1.0), "at least one client"),
    ],
)
def test_dp_rejects_bad_parameters(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_with_update_rejects_an_update_of_another_model(one_digit) -> None:
    _, _, leak = one_digit
    with pytest.raises(ValueError, match="parameter names"):
        with_update(leak, {"w": torch.zeros(3)})
    wrong = {name: torch.zeros(2) for name in leak.update}
    with pytest.raises(ValueError, match="shape"):
        with_update(leak, wrong)


# --- compression --------------------------------------------------------------------------------


def count(update) -> int:
    return sum(u.numel() for u in update.values())


def nonzero(update) -> int:
    return sum(int((u != 0).sum()) for u in update.values())


def test_top_k_keeps_the_largest_tenth_and_pays_for_positions(one_digit) -> None:
    _, _, leak = one_digit
    sparse, ratio = top_k(leak.update, 0.1)
    assert count(leak.update) / nonzero(sparse) == pytest.approx(10, rel=0.01)  # values alone: 10x
    # positions: a bitmap (1 bit per entry) is cheaper than 13-bit indices at 10 %: 32 / (3.2 + 1) = 7.6x
    assert ratio == pytest.approx(32 / (0.1 * 32 + 1), rel=0.01)
    for name, u in leak.update.items():
        kept = sparse[name] != 0
        torch.testing.assert_close(sparse[name][kept], u[kept])  # kept values are exact
        assert float(u[~kept].abs().max()) <= float(u[kept].abs().min())  # and they are the largest


def test_top_k_of_a_few_entries_codes_positions_as_indices() -> None:
    update = {"w": torch.arange(1.0, 1025.0)}  # n = 1024: 10-bit indices
    sparse, ratio = top_k(update, 0.01)  # 11 kept: 11 * (32 + 10) bits < 32 * 11 + 1024
    assert nonzero(sparse) == 11 and float(sparse["w"][-11:].min()) == 1014.0
    assert ratio == pytest.approx(32 * 1024 / (11 * 42))


def test_top_k_of_a_vanishing_fraction_still_sends_one_entry() -> None:
    sparse, ratio = top_k({"w": torch.arange(1.0, 1025.0)}, 5e-324)  # rounded to none, it divided by zero
    assert nonzero(sparse) == 1 and float(sparse["w"][-1]) == 1024.0 and ratio == pytest.approx(32 * 1024 / 42)


def test_pruning_zeroes_the_smallest_fraction(one_digit) -> None:
    _, _, leak = one_digit
    pruned, ratio = prune_gradient(leak.update, 0.2)
    assert nonzero(pruned) == pytest.approx(0.8 * count(leak.update), rel=0.01)
    assert ratio == pytest.approx(32 / (0.8 * 32 + 1), rel=0.01)  # sent sparse: values plus a bitmap
    same, one = prune_gradient(leak.update, 0.0)
    assert one == 1.0 and all(torch.equal(same[n], u) for n, u in leak.update.items())


def test_quantisation_stays_within_a_step_and_stochastic_rounding_is_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    update = {"w": torch.randn(2000, generator=g), "b": torch.rand(50, generator=g)}
    for stochastic, bound in ((False, 0.5), (True, 1.0)):
        sent, ratio = quantise(update, 4, stochastic=stochastic, generator=g)
        assert ratio == pytest.approx(32 * 2050 / (4 * 2050 + 2 * 64))  # 4 bits each + min and max per tensor
        for name, u in update.items():
            step = float(u.max() - u.min()) / 15
            assert float((sent[name] - u).abs().max()) <= bound * step + 1e-6
            assert len(sent[name].unique()) <= 16
    draws = torch.stack([quantise(update, 2, generator=g)[0]["w"] for _ in range(400)])  # (400, 2000)
    step = float(update["w"].max() - update["w"].min()) / 3
    assert float((draws.mean(0) - update["w"]).abs().mean()) < 0.05 * step


def test_sign_compression_sends_one_bit_per_entry(one_digit) -> None:
    _, _, leak = one_digit
    signs, ratio = sign_compress(leak.update)
    assert ratio == pytest.approx(32, rel=0.03)  # 1 bit each, plus one 32-bit scale per tensor
    for name, u in leak.update.items():
        torch.testing.assert_close(signs[name].abs().unique(), u.abs().mean().view(1))
        assert torch.equal(signs[name].sign(), u.sign())


def test_compression_against_dlg_pruning_half_and_sign_stop_it(one_digit) -> None:
    """Measured at 200 iterations: pruning 10 % leaves 37 dB, 20 % 29 dB, 50 % 16 dB; sign 4 dB."""
    batch, _, leak = one_digit
    assert dlg_psnr(with_update(leak, prune_gradient(leak.update, 0.5)[0]), batch) < 20
    assert dlg_psnr(with_update(leak, sign_compress(leak.update)[0]), batch) < 12


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda u: top_k(u, 0.0), "top_k fraction"),
        (lambda u: top_k(u, 1.5), "top_k fraction"),
        (lambda u: prune_gradient(u, 1.0), "prune_gradient fraction"),
        (lambda u: quantise(u, 0), "bits"),
        (lambda u: quantise(u, 2.5), "bits"),
        (lambda u: quantise(u, 32), "bits"),
    ],
)
def test_compression_rejects_bad_parameters(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call({"w": torch.ones(10)})


# --- secure aggregation -------------------------------------------------------------------------


def random_vectors(count: int, length: int = 2000, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(length, generator=g) for _ in range(count)]


def test_secure_sum_with_two_dropouts_equals_the_plain_sum_of_the_survivors() -> None:
    vectors = random_vectors(10)
    result = secure_sum(vectors, threshold=7, drop_before_input={3, 8})
    assert result.survivors == (0, 1, 2, 4, 5, 6, 7, 9)
    plain = sum(vectors[u] for u in result.survivors)
    assert float((result.total - plain).abs().max()) <= 8 * result.step / 2  # half a step per client
    assert result.bytes_per_client < 1.5 * result.plain_bytes  # keys and shares: small beside the vector


def test_clients_may_also_drop_out_before_unmasking() -> None:
    vectors = random_vectors(10, seed=1)
    result = secure_sum(vectors, threshold=7, drop_before_input={0}, drop_before_unmask={4, 5})
    plain = sum(vectors[u] for u in range(1, 10))  # 4 and 5 sent masked inputs: they count
    assert float((result.total - plain).abs().max()) <= 9 * result.step / 2


def test_the_server_sees_only_masked_vectors_that_look_uniform() -> None:
    vectors = random_vectors(4)
    result = secure_sum(vectors, threshold=3)
    for u, y in result.masked.items():
        assert not np.array_equal(y, encode(vectors[u], 16))
        words = torch.from_numpy(y.astype(np.int64)).double() / 2**32  # uniform on [0, 1) if masked
        assert abs(float(words.mean()) - 0.5) < 0.03 and abs(float(words.std()) - 12**-0.5) < 0.03
    again = secure_sum(vectors, threshold=3)  # fresh keys and seeds: the same input masked anew
    assert not np.array_equal(again.masked[0], result.masked[0])


def test_a_masked_vector_cannot_be_inverted_but_the_sum_can_as_well_as_plain_fedavg(mnist) -> None:
    batch = select_batch(mnist, 2, seed=0)
    model = create_model("lenet", seed=0)
    clients = [(batch.images[i : i + 1], batch.labels[i : i + 1]) for i in range(2)]
    params = model_parameters(model)
    updates = [{n: g.detach() for n, g in client_update(model, params, x, y).items()} for x, y in clients]
    plain = leak_update(model, clients)
    secure = with_update(plain, secure_aggregate(updates, threshold=2))
    attack = create_attack("dlg", iterations=100)
    plain_psnr = evaluate(attack.run(plain).images, batch.images).psnr
    secure_psnr = evaluate(attack.run(secure).images, batch.images).psnr
    assert secure_psnr > 20 and abs(secure_psnr - plain_psnr) < 2  # it hides individuals, not the aggregate
    masked = secure_sum([flatten(u) for u in updates], threshold=2).masked[0]
    one = leak_update(model, clients[:1])
    step = create_attack("dlg", iterations=100).run(with_update(one, unflatten(decode(masked, 16), updates[0])))
    assert evaluate(step.images, batch.images[:1]).psnr < 12


def test_shamir_rebuilds_a_32_byte_key_from_t_shares_only() -> None:
    key = bytes(range(32))
    shares = split_secret(key, threshold=3, count=5)
    assert [i for i, _ in shares] == [1, 2, 3, 4, 5] and all(len(s) == 44 for _, s in shares)  # 11 words
    assert combine_secret(shares[2:5], size=32, threshold=3) == key
    with pytest.raises(ValueError, match="2 distinct shares cannot rebuild a secret with threshold 3"):
        combine_secret(shares[:2], size=32, threshold=3)


@pytest.mark.parametrize("size", [16, 32])
def test_shamir_any_t_of_n_shares_rebuild_a_random_secret_and_t_minus_1_do_not(size) -> None:
    rng = np.random.default_rng(size)
    for _ in range(20):
        secret = os.urandom(size)
        shares = split_secret(secret, threshold=4, count=9)
        chosen = [shares[j] for j in rng.choice(9, size=4, replace=False)]
        assert combine_secret(chosen, size, threshold=4) == secret
        assert combine_secret(shares, size, threshold=4) == secret  # more than t agree too
        try:  # t - 1 shares fit some polynomial of degree t - 2: not the secret, and mostly not even bytes
            assert combine_secret(chosen[:3], size, threshold=3) != secret
        except ValueError as error:
            assert "do not rebuild" in str(error)


def test_shamir_shares_look_uniform_and_differ_from_the_secret() -> None:
    secret = bytes(32)  # all zero: a share that leaked it would be all zero too
    shares = split(np.zeros((200, 32), dtype=np.uint8), threshold=5, count=7)  # (n, S, C)
    assert shares.shape == (7, 200, 11) and shares.dtype == np.int64
    assert all(s != bytes(len(s)) for _, s in split_secret(secret, 5, 7))  # not the zero chunks
    words = shares.astype(np.float64) / P  # uniform on [0, 1) if each share is a uniform element of Z_p
    assert abs(words.mean() - 0.5) < 0.01 and abs(words.std() - 12**-0.5) < 0.01
    assert (shares < P).all() and (shares >= 0).all()


def test_shamir_splits_many_secrets_at_once_as_it_splits_one() -> None:
    secrets_ = np.frombuffer(os.urandom(50 * 32), dtype=np.uint8).reshape(50, 32)
    shares = split(secrets_, threshold=6, count=10)  # (10, 50, 11)
    rebuilt = combine([2, 3, 5, 7, 9, 10], shares[[1, 2, 4, 6, 8, 9]], size=32, threshold=6)  # (50, 32)
    assert np.array_equal(rebuilt, secrets_)
    for s in secrets_[:5]:  # one at a time gives other shares (fresh coefficients) of the same secret
        one = split_secret(s.tobytes(), threshold=6, count=10)
        assert combine_secret(one[4:], size=32, threshold=6) == s.tobytes()


def test_shamir_with_thousands_of_parties_stays_exact() -> None:
    secrets_ = np.frombuffer(os.urandom(2 * 16), dtype=np.uint8).reshape(2, 16)
    shares = split(secrets_, threshold=2500, count=2600)  # t > 2048: sums in blocks, no int64 overflow
    rows = np.arange(100, 2600)
    assert np.array_equal(combine(rows + 1, shares[rows], size=16, threshold=2500), secrets_)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: split(np.zeros((1, 16), np.uint8), threshold=6, count=5), "threshold <= count"),
        (lambda: combine([1, 1, 2], np.zeros((3, 1, 6)), size=16, threshold=2), "distinct"),
        (lambda: combine([1, 2], np.full((2, 1, 6), P), size=16, threshold=2), r"values in \[0, p\)"),
    ],
)
def test_shamir_rejects_bad_parameters(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_wrong_share_makes_the_round_abort_not_return_a_wrong_sum(monkeypatch) -> None:
    from engine.defences import secure_aggregation as sa

    honest = sa.Client.unmasking_shares

    def corrupt(self, u3, dropped):  # client 9 answers with altered shares
        out = honest(self, u3, dropped)
        return {u: (i, bytes(len(s)) if self.u == 9 else s) for u, (i, s) in out.items()}

    monkeypatch.setattr(sa.Client, "unmasking_shares", corrupt)
    with pytest.raises(SecureAggregationError, match="do not rebuild|does not match"):
        secure_sum(random_vectors(10, length=50), threshold=10)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"threshold": 11}, ValueError, "threshold t must be .* from 2 to the number of clients 10"),
        ({"threshold": 1}, ValueError, "threshold"),
        ({"threshold": 8, "drop_before_input": {1, 2, 3}}, SecureAggregationError, "only 7 of 10 .* aborts"),
        ({"threshold": 8, "drop_before_unmask": {1, 2, 3}}, SecureAggregationError, "unmasking"),
        ({"threshold": 5, "drop_before_input": {12}}, ValueError, r"dropped clients \[12\]"),
        ({"threshold": 5, "frac_bits": 30}, ValueError, "frac_bits"),
    ],
)
def test_secure_aggregation_rejects_what_it_cannot_sum_correctly(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        secure_sum(random_vectors(10, length=50), **kwargs)


def test_secure_aggregation_refuses_values_that_would_overflow_the_ring() -> None:
    with pytest.raises(ValueError, match="overflow"):
        secure_sum([torch.full((5,), 20000.0), torch.zeros(5)], threshold=2)  # 20000 * 2^16 * 2 > 2^31
