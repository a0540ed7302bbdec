"""A whole experiment from a Config: the protocol as the CLI and the app run it."""

from __future__ import annotations

import pytest
import torch

from engine.config import Config, with_overrides
from engine.experiment import finish, make_attack, prepare, run


def quick(*overrides: str) -> Config:
    return with_overrides(Config(), ["attack.iterations=60", *overrides])


def test_the_same_seed_gives_the_same_run() -> None:
    first, second = run(quick("data.batch_size=2")), run(quick("data.batch_size=2"))
    assert torch.equal(first.reconstruction, second.reconstruction)
    assert first.evaluation.psnr == second.evaluation.psnr


def test_non_iid_clients_each_hold_their_own_batch() -> None:
    setup = prepare(quick("data.clients=3", "data.batch_size=2", "data.split=dirichlet", "data.alpha=0.1"))
    assert [len(b) for b in setup.clients] == [2, 2, 2]
    assert setup.leak.client_sizes == (2, 2, 2)
    indices = torch.cat([b.indices for b in setup.clients])
    assert len(set(indices.tolist())) == 6  # no image is held by two clients


def test_fedavg_over_clients_runs_and_scores() -> None:
    result = run(quick("data.clients=2", "data.batch_size=1", "leak.protocol=fedavg", "leak.local_steps=2"))
    assert result.originals.shape == result.reconstruction.shape == (2, 1, 28, 28)
    assert 0 <= result.evaluation.label_accuracy <= 1


def test_faces_are_resized_to_the_models_input() -> None:
    setup = prepare(quick("data.dataset=lfw_faces", "data.batch_size=2"))
    assert setup.images.shape == (2, 1, 28, 28)
    assert setup.leak.image_shape == (1, 28, 28)


def test_a_trained_victim_leaks_a_smaller_gradient() -> None:
    fresh = prepare(quick("model.name=convnet", "data.batch_size=4"))
    trained = prepare(quick("model.name=convnet", "data.batch_size=4", "model.train_steps=150"))
    norm = lambda s: sum(v**2 for v in s.leak.layer_norms().values()) ** 0.5  # noqa: E731
    assert norm(trained) < norm(fresh)


def test_true_labels_are_handed_over_only_under_that_threat_model() -> None:
    assert prepare(quick()).attacker_labels is None
    setup = prepare(quick("attack.labels=true"))
    assert torch.equal(setup.attacker_labels, setup.labels)
    step = make_attack(setup.config).run(setup.leak, setup.attacker_labels)
    assert finish(setup, step).evaluation.label_accuracy == 1.0


def test_cifar_without_a_root_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match="root"):
        prepare(quick("data.dataset=cifar10"))


def test_a_batch_larger_than_the_data_is_refused_with_both_numbers() -> None:
    with pytest.raises(ValueError, match="100"):
        prepare(quick("data.dataset=lfw_faces", "data.batch_size=101"))


def test_share_histograms_count_what_each_client_was_dealt() -> None:
    setup = prepare(quick("data.clients=4", "data.batch_size=2", "data.split=shards", "data.shards_per_client=1"))
    counts = setup.share_histograms()
    assert counts.shape == (4, 10)
    assert int(counts.sum()) == len(setup.dataset)  # every image is dealt once
    for client, batch in zip(counts, setup.clients):  # each batch comes from its client's share
        assert all(client[int(y)] > 0 for y in batch.labels)


def test_a_leak_that_overflows_is_one_clear_error_before_any_attack():
    # a trap weight of 1e308 makes the update inf; label recovery then failed inside LAPACK
    cfg = with_overrides(Config(), ["leak.server=trap", "leak.trap_scale=1e308", "data.batch_size=2"])
    with pytest.raises(ValueError, match="leaked update is not finite"):
        prepare(cfg)
