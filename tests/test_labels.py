"""Labels come back out of the last layer's gradient."""

from __future__ import annotations

import torch

from engine.data import select_batch
from engine.labels import counts_to_labels, idlg_label, label_candidates, recover_labels
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
