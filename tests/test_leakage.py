"""The leaked update equals what autograd computes directly, for every protocol."""

from __future__ import annotations

import torch
from torch import nn

from engine.leakage import leak_update
from engine.models import create_model


def direct_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    loss = nn.functional.cross_entropy(model(images), labels)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def test_fedsgd_over_clients_is_the_mean_gradient_of_all_images(mnist) -> None:
    model = create_model("lenet", seed=1)
    x, y = mnist.images[:6], mnist.labels[:6]
    leak = leak_update(model, [(x[:2], y[:2]), (x[2:], y[2:])])  # clients of 2 and 4 images
    for leaked, direct in zip(leak.update.values(), direct_gradient(model, x, y)):
        torch.testing.assert_close(leaked, direct, rtol=1e-5, atol=1e-6)
    assert leak.client_sizes == (2, 4)
    torch.testing.assert_close(leak.weights(), torch.tensor([1 / 3, 2 / 3]))


def test_fedavg_one_full_step_is_lr_times_the_gradient(mnist) -> None:
    model = create_model("convnet", seed=2)
    x, y = mnist.images[:4], mnist.labels[:4]
    leak = leak_update(model, [(x, y)], protocol="fedavg", local_steps=1, local_lr=0.05)
    for leaked, direct in zip(leak.update.values(), direct_gradient(model, x, y)):
        torch.testing.assert_close(leaked, 0.05 * direct, rtol=1e-5, atol=1e-7)


def test_fedavg_several_minibatch_steps_match_a_plain_sgd_loop(mnist) -> None:
    model = create_model("mlp", seed=3)
    x, y = mnist.images[:6], mnist.labels[:6]
    leak = leak_update(model, [(x, y)], protocol="fedavg", local_steps=3, local_lr=0.1, local_batch_size=4)
    start = [p.detach().clone() for p in model.parameters()]
    twin = create_model("mlp", seed=3)
    sgd = torch.optim.SGD(twin.parameters(), lr=0.1)
    for step in range(3):  # the schedule client_update documents: in order, wrapping around
        idx = (torch.arange(4) + 4 * step) % 6
        sgd.zero_grad()
        nn.functional.cross_entropy(twin(x[idx]), y[idx]).backward()
        sgd.step()
    for leaked, w0, w in zip(leak.update.values(), start, twin.parameters()):
        torch.testing.assert_close(leaked, w0 - w.detach(), rtol=1e-4, atol=1e-6)


def test_leak_counts_what_the_server_sees_against_what_it_must_find(mnist) -> None:
    model = create_model("lenet", seed=0)
    leak = leak_update(model, [(mnist.images[:8], mnist.labels[:8])])
    assert leak.observed == sum(p.numel() for p in model.parameters())
    assert leak.unknowns == 8 * (28 * 28 + 1)
    assert set(leak.layer_norms()) == {name for name, _ in model.named_parameters()}
    assert "mean gradient" in repr(leak) and "8 image(s)" in repr(leak)


def test_the_leak_does_not_hold_the_images(mnist) -> None:
    leak = leak_update(create_model("lenet"), [(mnist.images[:2], mnist.labels[:2])])
    held = [v for v in vars(leak).values() if isinstance(v, torch.Tensor)]
    assert all(t.shape != mnist.images[:2].shape for t in held)
