"""Benchmark: poisoned clients against robust aggregation, on the lab's Flower run.

    python bench/byzantine.py                                  # everything below (about an hour on 2 busy cores)
    python bench/byzantine.py --parts accuracy --splits dirichlet --attacks none,sign_flip,alie --jobs 2
    python bench/byzantine.py --parts cosine,speed             # the one-round cosine table and the timings only
    python bench/byzantine.py --splits iid --jobs 2            # the accuracy table, IID only, two processes
    python bench/byzantine.py --strategies fedavg,multikrum --attacks none,sign_flip --rounds 3

1. accuracy: test accuracy after the run for every aggregator x attack (none, sign flip, Gaussian,
   ALIE, IPM with epsilon 0.1 and 10, label flip, backdoor with its success rate on triggered test
   images, attacking from round 2 of a run whose round-0 model the server pretrained for 3 epochs on its
   public images, beside that pretrained run with no attacker), IID and Dirichlet 0.1. Every run: the ConvNet, 20 clients all taking
   part (--clients), 4 attackers (20%), 3 rounds of 2 local epochs, the aggregators assume f = 4 (also
   with no attacker: the server cannot know), seed 0.
   Under Dirichlet 0.1 also: the honest clients Krum and MultiKrum dropped per round with no attacker.
2. cosine: for one round (round 1, IID), the cosine of each aggregate with the honest clients' mean update
   (1 = unharmed), the table shape of the team's probe in FINDINGS.md.
3. speed: the server's seconds per round for each aggregator on 50 and 500 replies of the ConvNet's size
   (the clients' training is the same for every aggregator and is reported once).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import Config, with_overrides  # noqa: E402

STRATEGIES = ("fedavg", "median", "trimmed_mean", "krum", "multikrum", "bulyan", "norm_clip", "centered_clip",
              "fltrust")
ATTACKS = {  # column -> overrides
    "none": ["federation.attack=none"],
    "sign_flip": ["federation.attack=sign_flip"],
    "gaussian": ["federation.attack=gaussian"],
    "alie": ["federation.attack=alie"],
    "ipm_0.1": ["federation.attack=ipm", "federation.poison.epsilon=0.1"],
    "ipm_10": ["federation.attack=ipm", "federation.poison.epsilon=10"],
    "label_flip": ["federation.attack=label_flip"],
    "pretrained": ["federation.attack=none", "federation.pretrain=3"],  # the backdoor's clean baseline
    "backdoor": ["federation.attack=backdoor", "federation.poison.start=2", "federation.pretrain=3"],
}
CLIENTS, F = 50, 10  # the cosine table; the accuracy runs take --clients (f = 20% of them)


def base(args: argparse.Namespace, split: str, clients: int = CLIENTS) -> list[str]:
    f = round(0.2 * clients)
    out = ["model.name=convnet", f"federation.clients={clients}", "federation.fraction=1.0",
           f"federation.rounds={args.rounds}", f"federation.local_epochs={args.epochs}", "federation.lr=0.1",
           "federation.deadline=1e6", "federation.attackers=0.2", f"federation.robust.byzantine={f}",
           "federation.robust.trim=0.2"]
    if split == "dirichlet":
        out += ["data.split=dirichlet", "data.alpha=0.1"]
    return out


def one_run(job: tuple[list[str], str, str, str]) -> tuple[str, str, str, float, object, list, float]:
    """Run one (split, strategy, attack); return its final accuracy, success and the kept weights."""
    torch.set_num_threads(1)
    from engine.federation import run_history
    from engine.federation.poison import attackers

    overrides, split, strategy, attack = job
    cfg = with_overrides(Config(), overrides)
    start = time.perf_counter()
    history = run_history(cfg)
    last = history.records[-1]
    honest_dropped = []
    bad = attackers(with_overrides(cfg, ["federation.attack=sign_flip"]))
    for r in history.records:
        honest_dropped.append(sum(1 for c, w in r.kept if w == 0.0 and c not in bad))
    return split, strategy, attack, last.accuracy, last.attack_success, honest_dropped, time.perf_counter() - start


def accuracy_tables(args: argparse.Namespace) -> None:
    jobs = [(base(args, split, args.clients) + [f"federation.strategy={s}"] + ATTACKS[a], split, s, a)
            for split in args.splits for a in args.attacks for s in args.strategies]
    results: dict[tuple[str, str, str], tuple] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for split, s, a, acc, success, dropped, seconds in pool.map(one_run, jobs):
            results[(split, s, a)] = (acc, success, dropped)
            print(f"  {split} {s} {a}: {acc:.1%} success {success} honest dropped {dropped} ({seconds:.0f} s)",
                  file=sys.stderr, flush=True)
    for split in args.splits:
        f = round(0.2 * args.clients)
        print(f"\n### Test accuracy after {args.rounds} rounds of {args.epochs} local epochs, {split}"
              f"{' (alpha 0.1)' if split == 'dirichlet' else ''}: {args.clients} clients, {f} attackers, f = {f}")
        print("| aggregator | " + " | ".join(args.attacks) + " |")
        print("|---|" + "---|" * len(args.attacks))
        for s in args.strategies:
            cells = []
            for a in args.attacks:
                if (split, s, a) not in results:
                    cells.append("")
                    continue
                acc, success, _ = results[(split, s, a)]
                cells.append(f"{acc:.1%}" + (f" (ASR {success:.0%})" if a == "backdoor" and success is not None else ""))
            print(f"| {s} | " + " | ".join(cells) + " |")
        if "none" in args.attacks:
            for s in ("krum", "multikrum", "bulyan"):
                if (split, s, "none") in results:
                    print(f"{s}, no attacker: honest clients dropped per round {results[(split, s, 'none')][2]}")


def honest_round(cfg: Config) -> tuple[torch.Tensor, list[int]]:
    """Every client's honest round-1 update, flat (n, d), from the initial model."""
    from engine.defences.secure_aggregation import flatten
    from engine.federation.client_app import architecture
    from engine.federation.task import federated_data, local_update, round_generator
    from engine.leakage import model_parameters

    data = federated_data(cfg)
    model = architecture(cfg, data.num_classes)
    params = {k: v.detach().clone() for k, v in model_parameters(model).items()}
    rows = []
    for k in range(cfg.federation.clients):
        batch = data.client_batch(k, 1, cfg.seed)
        rows.append(flatten(local_update(model, params, batch.images, batch.labels, cfg, round_generator(cfg.seed, 1, k))))
    return torch.stack(rows), [len(s) for s in data.shares]


def cosine_table(args: argparse.Namespace) -> None:
    """One round: each aggregator on honest updates with the attackers' replaced, cosine with the honest mean."""
    from engine.federation.poison import alie_z
    from engine.federation.robust import centered_clip, coordinate_share, fltrust, norm_clip  # noqa: F401

    cfg = with_overrides(Config(), base(args, "iid"))
    honest, sizes = honest_round(cfg)  # (50, d)
    n, f = len(honest), F
    good = honest[f:]  # the first f play the attackers
    mu, sigma = good.mean(0), good.std(0, unbiased=False)
    g = torch.Generator().manual_seed(0)
    crafted = {
        "none": honest[:f],
        "sign flip x10": -10 * honest[:f],
        "Gaussian 10": 10 * torch.randn(honest[:f].shape, generator=g),
        f"ALIE z {alie_z(n, f):.2f}": (mu - alie_z(n, f) * sigma).expand(f, -1),
        "IPM eps 0.1": (-0.1 * mu).expand(f, -1),
        "IPM eps 10": (-10 * mu).expand(f, -1),
    }
    root = _root_update(cfg)
    print(f"\n### Cosine of each aggregate with the honest mean, one round ({n} clients, {f} attackers, IID)")
    print("| attack | " + " | ".join(args.strategies) + " |")
    print("|---|" + "---|" * len(args.strategies))
    for name, bad in crafted.items():
        stack = torch.cat([bad, good])
        cells = [f"{torch.nn.functional.cosine_similarity(_aggregate(s, stack, f, root), mu, dim=0):.2f}"
                 for s in args.strategies]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _root_update(cfg: Config) -> torch.Tensor:
    from engine.defences.secure_aggregation import flatten
    from engine.federation.client_app import architecture
    from engine.federation.robust import LabFLTrust
    from engine.federation.strategy import create_strategy
    from engine.federation.task import federated_data
    from engine.leakage import model_parameters

    strategy = create_strategy(with_overrides(cfg, ["federation.strategy=fltrust"]))
    assert isinstance(strategy, LabFLTrust)
    model = architecture(cfg, federated_data(cfg).num_classes)
    strategy.global_params = {k: v.detach().clone() for k, v in model_parameters(model).items()}
    return strategy.root_update(1)


def _aggregate(strategy: str, stack: torch.Tensor, f: int, root: torch.Tensor) -> torch.Tensor:
    """The aggregate update of a stack of updates under one rule (the same rules the strategies run)."""
    import numpy as np
    from flwr.serverapp.strategy.fedtrimmedavg import trim_mean

    from engine.federation.robust import centered_clip, fltrust, norm_clip

    n = len(stack)
    if strategy == "fedavg":
        return stack.mean(0)
    if strategy == "median":
        return stack.median(0).values if n % 2 else stack.sort(0).values[n // 2 - 1:n // 2 + 1].mean(0)
    if strategy == "trimmed_mean":
        return torch.from_numpy(trim_mean(stack.numpy(), 0.2)).float()
    if strategy in ("krum", "multikrum", "bulyan"):
        chosen = _krum(stack, f, 1 if strategy == "krum" else (n - f if strategy == "multikrum" else n - 2 * f))
        if strategy != "bulyan":
            return stack[chosen].mean(0)
        picked = stack[chosen]
        far = (picked - torch.from_numpy(np.median(picked.numpy(), axis=0))).abs()
        idx = far.argsort(0)[: len(chosen) - 2 * f]
        return picked.gather(0, idx).mean(0)
    if strategy == "norm_clip":
        return norm_clip(stack, torch.ones(n), 0.0)[0]
    if strategy == "centered_clip":
        return centered_clip(stack, torch.zeros(stack.shape[1]), 0.0, 3)[0]
    if strategy == "fltrust":
        return fltrust(stack, root)[0]
    raise ValueError(strategy)


def _krum(stack: torch.Tensor, f: int, m: int) -> list[int]:
    """Flower's select_multikrum on a plain stack: the m lowest Krum scores."""
    d = torch.cdist(stack, stack) ** 2
    closest = max(1, len(stack) - f - 2)
    scores = d.sort(1).values[:, 1:closest + 1].sum(1)
    return scores.argsort()[:m].tolist()


def speed_table(args: argparse.Namespace) -> None:
    """Server seconds per round of each strategy's aggregate_train on n replies of the ConvNet's size."""
    from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from engine.federation.client_app import architecture
    from engine.federation.strategy import RoundOutcome, create_strategy
    from engine.leakage import model_parameters

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    print("\n### Server seconds per round (aggregation only, ConvNet, 29,066 parameters per reply)")
    print("| aggregator | " + " | ".join(f"{n} replies" for n in (50, 500)) + " |")
    print("|---|---|---|")
    rows: dict[str, list[str]] = {s: [] for s in args.strategies}
    for n in (50, 500):
        cfg = with_overrides(Config(), ["model.name=convnet", f"federation.clients={n}", "federation.fraction=1.0",
                                        f"federation.robust.byzantine={n // 5 if n < 100 else 50}"])
        model = architecture(cfg, 10)
        sent = {k: v.detach().clone() for k, v in model_parameters(model).items()}
        g = torch.Generator().manual_seed(0)
        weights = [{k: v - 0.01 * torch.randn(v.shape, generator=g) for k, v in sent.items()} for _ in range(n)]
        for s in args.strategies:
            strategy = create_strategy(with_overrides(cfg, [f"federation.strategy={s}"]))
            msgs = []
            for k in range(n):
                ins = Message(content=RecordDict({"arrays": ArrayRecord(sent)}), dst_node_id=k + 1,
                              message_type=MessageType.TRAIN)
                ins.metadata.__dict__["_message_id"] = f"m{k}"
                metrics = MetricRecord({"num-examples": 80, "partition-id": k})
                msgs.append(Message(content=RecordDict({"arrays": ArrayRecord(weights[k]), "metrics": metrics}),
                                    reply_to=ins))
            strategy._sent[1] = ArrayRecord(sent)
            strategy.outcomes[1] = RoundOutcome(sampled=list(range(1, n + 1)))
            start = time.perf_counter()
            strategy.aggregate_train(1, msgs)
            rows[s].append(f"{time.perf_counter() - start:.2f}")
    for s, cells in rows.items():
        print(f"| {s} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="cosine,speed,accuracy")
    parser.add_argument("--splits", default="iid,dirichlet")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="local epochs (default 2)")
    parser.add_argument("--clients", type=int, default=20, help="clients of the accuracy runs, all taking part")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    args = parser.parse_args()
    args.splits, args.strategies = args.splits.split(","), args.strategies.split(",")
    args.attacks = args.attacks.split(",")
    torch.set_num_threads(1)
    import logging
    import os

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.getLogger("flwr").setLevel(logging.ERROR)
    parts = args.parts.split(",")
    if "cosine" in parts:
        cosine_table(args)
    if "speed" in parts:
        speed_table(args)
    if "accuracy" in parts:
        accuracy_tables(args)


if __name__ == "__main__":
    main()
