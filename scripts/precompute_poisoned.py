"""Record the Poisoned-clients page's runs, so it opens on curves instead of an empty chart.

For each setting a visitor meets first (the default, the lecture step, the "try this" list) it runs the
page's three runs (clean, attacked, defended) with the same code and the page's small federation, and
writes them to assets/precomputed/poisoned.json; the page shows a recording only when its config matches
exactly. The aggregators x attacks table comes from bench/byzantine.py's printed tables.

    python scripts/precompute_poisoned.py                                   # the runs (a few minutes)
    python scripts/precompute_poisoned.py --table bench-output.md           # and the table from a bench run
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import Config, to_json, with_overrides  # noqa: E402
from engine.federation.compare import run_outcome  # noqa: E402

OUT = ROOT / "assets" / "precomputed" / "poisoned.json"
SETTINGS = [  # (attack, strategy, non-IID); keep in step with pages/poisoned.py and pages/lecture.py
    ("none", "fedavg", False), ("sign_flip", "fedavg", False), ("sign_flip", "multikrum", False),
    ("alie", "median", False), ("alie", "multikrum", False), ("ipm", "krum", False),
    ("backdoor", "fedavg", False), ("backdoor", "norm_clip", False), ("backdoor", "fltrust", False),
    ("label_flip", "fedavg", False),
    ("none", "krum", True),
]


def page_config(attack: str, strategy: str, non_iid: bool) -> Config:
    from pages.poisoned_run import page_overrides  # the page's own settings

    base = with_overrides(Config(), [f"federation.attack={attack}", f"federation.strategy={strategy}",
                                     "federation.attackers=0.2"] + (["data.split=dirichlet"] if non_iid else []))
    return with_overrides(base, page_overrides(base))


def runs(setting: tuple[str, str, bool], memo: dict) -> tuple[str, dict]:
    """The page's three runs for one setting (runs shared between settings are run once)."""
    from engine.federation.compare import three_configs
    from pages.poisoned_run import key_of

    cfg = page_config(*setting)
    out = {}
    for label, one in three_configs(cfg).items():
        k = to_json(one)
        if k not in memo:
            memo[k] = run_outcome(one).to_dict()
            print(f"  {setting} {label}: {memo[k]['accuracy'][-1]:.1%}", file=sys.stderr, flush=True)
        out[label] = memo[k]
    return key_of(cfg), out


def table_from(markdown: Path) -> dict:
    """The first accuracy table of a bench/byzantine.py output: {attack: {aggregator: accuracy}}."""
    lines = markdown.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### Test accuracy"))
    setting = lines[start].removeprefix("### Test accuracy ").strip()
    header = [c.strip() for c in lines[start + 1].strip("|").split("|")]
    table: dict[str, dict[str, float]] = {a: {} for a in header[1:]}
    success: dict[str, dict[str, float]] = {}  # the bracketed share: triggered digits (or 7s) called the target
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for attack, cell in zip(header[1:], cells[1:]):
            number = re.match(r"([\d.]+)%(?: \(([\d.]+)%\))?", cell)
            if number:
                table[attack][cells[0]] = float(number.group(1)) / 100
                if number.group(2):
                    success.setdefault(attack, {})[cells[0]] = float(number.group(2)) / 100
    return {"setting": setting, "accuracy": table, "success": success}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, help="a bench/byzantine.py output with an accuracy table")
    parser.add_argument("--only-table", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}, "table": {}}
    if args.table:
        data["table"] = table_from(args.table)
    if not args.only_table:
        data["runs"], memo = {}, {}  # recorded afresh: a changed default changes the keys of what differs from it
        for setting in SETTINGS:
            key, three = runs(setting, memo)
            data["runs"][key] = three
            OUT.write_text(json.dumps(data))  # after each setting: a stopped run keeps what it did
    OUT.write_text(json.dumps(data))
    print(f"-> {OUT.relative_to(ROOT)} ({len(data['runs'])} settings)")


if __name__ == "__main__":
    main()
