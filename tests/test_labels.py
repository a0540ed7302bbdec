"""Labels come back out of the last layer's gradient."""

from __future__ import annotations

import pytest
import torch

from engine.data import load_dataset, select_batch
from engine.labels import counts_to_labels, idlg_label, label_candidates, recover_labels, round_counts
from engine.leakage import leak_update
from engine.metrics import label_accuracy
from engine.models import create_model


def test_idlg_reads_every_class_from_one_image(mnist) -> None:
    for model_name in ("lenet", "convnet", "mlp", "resnet"):
        model = create_model(model_name, seed=4)
        for c in range(10):
            image = mnist.images[mnist.labels == c][:1]
            leak = leak_update(model, [(image, torch.tensor([c]))])
            assert idlg_label(leak) == c, f"{model_name}: class {c}"


def test_batch_counts_recover_95_percent_of_labels_at_batch_8(mnist) -> None:
    accuracies = []
    for seed in range(10):
        batch = select_batch(mnist, 8, seed=seed)
        leak = leak_update(create_model("lenet", seed=seed), [(batch.images, batch.labels)])
        accuracies.append(label_accuracy(recover_labels(leak), batch.labels))
    assert sum(accuracies) / len(accuracies) >= 0.95


def test_counts_work_through_an_aggregate_of_clients(mnist) -> None:
    model = create_model("lenet", seed=5)
    clients = [select_batch(mnist, 4, seed=s) for s in (11, 12, 13)]
    leak = leak_update(model, [(b.images, b.labels) for b in clients])
    truth = torch.cat([b.labels for b in clients])
    assert label_accuracy(recover_labels(leak), truth) >= 0.9


def test_candidates_are_distinct_multisets_of_the_right_size(mnist) -> None:
    batch = select_batch(mnist, 16, seed=3)
    leak = leak_update(create_model("lenet", seed=3), [(batch.images, batch.labels)])
    candidates = label_candidates(leak, limit=4)
    assert len({tuple(c.tolist()) for c in candidates}) == 4
    assert all(int(c.sum()) == 16 and int(c.min()) >= 0 for c in candidates)
    assert len(counts_to_labels(candidates[0])) == 16


@pytest.fixture(scope="module")
def auxiliary():
    """The attacker's labelled public digits: bundled train images, none of them a victim."""
    train = load_dataset("mnist", "train")
    return train.images[:1000], train.labels[:1000]


def test_auxiliary_images_read_the_exact_multiset_of_batches_of_16(mnist, auxiliary) -> None:
    exact = plain = 0
    for seed in range(20):
        batch = select_batch(mnist, 16, seed=1000 + seed)
        leak = leak_update(create_model("lenet", seed=1000 + seed), [(batch.images, batch.labels)])
        truth = batch.labels.sort().values
        exact += bool((recover_labels(leak, auxiliary=auxiliary) == truth).all())
        plain += bool((recover_labels(leak) == truth).all())
    assert exact >= 19, f"auxiliary fit: {exact}/20 exact"
    assert exact > plain, f"the auxiliary fit ({exact}/20) should beat random probes ({plain}/20)"


def test_auxiliary_fit_works_on_other_models_one_step_fedavg_and_clients(mnist, auxiliary) -> None:
    batch = select_batch(mnist, 12, seed=7)
    truth = batch.labels.sort().values
    for model_name in ("convnet", "resnet"):
        leak = leak_update(create_model(model_name, seed=7), [(batch.images, batch.labels)])
        assert (recover_labels(leak, auxiliary=auxiliary) == truth).all(), model_name
    fedavg = leak_update(create_model("lenet", seed=7), [(batch.images, batch.labels)], "fedavg", 1, 0.1)
    assert (recover_labels(fedavg, auxiliary=auxiliary) == truth).all()
    clients = [select_batch(mnist, 4, seed=s) for s in (11, 12, 13)]
    leak = leak_update(create_model("lenet", seed=5), [(b.images, b.labels) for b in clients])
    together = torch.cat([b.labels for b in clients]).sort().values
    assert (recover_labels(leak, auxiliary=auxiliary) == together).all()


def test_auxiliary_images_missing_a_class_are_refused(mnist, auxiliary) -> None:
    batch = select_batch(mnist, 4, seed=1)
    leak = leak_update(create_model("lenet", seed=1), [(batch.images, batch.labels)])
    images, labels = auxiliary
    keep = labels != 3
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[3\]"):
        recover_labels(leak, auxiliary=(images[keep], labels[keep]))


def test_round_counts_of_a_drowned_estimate_sum_to_n_at_once():
    # DP noise of 1e12 gives counts of 1e12: rounding must not take one step per surplus image
    counts = round_counts(torch.tensor([1e12, 3e11, 0.2, float("nan"), float("inf")]), 8)
    assert int(counts.sum()) == 8 and bool((counts >= 0).all())
    assert counts[0] >= counts[1] >= counts[2]  # the largest estimates keep the most images
