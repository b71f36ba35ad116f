"""SST-2 benchmark for robustkit's text path (issue 5, acceptance items 1-3).

Stages (run separately or all; each merges its figures into benchmarks/results/text_sst2.json):

  train    fine-tune MiniLM-L6 with a config (standard / freelb / augment), record dev accuracy and wall time
  attack   word-substitution and character attacks on the dev set (first --attack-size sentences)

    python benchmarks/text_sst2.py train --config configs/sst2-minilm-standard.yaml --data-dir ../shared/data
    python benchmarks/text_sst2.py attack --run runs/sst2-minilm-standard --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "text_sst2.json"


def _merge(section: str, key: str, doc: dict) -> None:
    """Read-modify-write under a file lock: stages run as concurrent processes."""
    import fcntl
    from robustkit.checkpoint import atomic_write_text
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "robustkit-text_sst2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        data.setdefault("machine", {"platform": platform.platform(), "torch": torch.__version__,
                                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()})
        data.setdefault(section, {})[key] = doc
        atomic_write_text(RESULTS, json.dumps(data, indent=2))


def stage_train(args) -> None:
    from robustkit.config import TrainConfig
    from robustkit.training import train
    cfg = TrainConfig.from_yaml(args.config, args.set)
    if args.data_dir:
        cfg.data_dir = args.data_dir
    t0 = time.perf_counter()
    res = train(cfg, overwrite=True, progress=True)  # tqdm to the log: a way to watch long runs
    wall = time.perf_counter() - t0
    last = res.history[-1]
    doc = {"config": str(args.config), "overrides": args.set, "run_dir": str(res.run_dir),
           "command": " ".join([sys.executable] + sys.argv), "wall_seconds": wall,
           "dev_accuracy_last": last["val_clean_acc"], "dev_accuracy_best": (res.best or {}).get("val_clean_acc"),
           "history": res.history, **res.extra}
    _merge("train", cfg.name or Path(args.config).stem, doc)
    logging.info("trained %s in %.0fs: dev accuracy %.4f", cfg.name, wall, last["val_clean_acc"])


def stage_attack(args) -> None:
    """Each attack alone (accuracy under it), then the per-sample worst case over all of them."""
    from robustkit.checkpoint import load_model
    from robustkit.data import load_dataset
    from robustkit.evaluation import evaluate
    from robustkit.modality import get_modality
    from robustkit.threat import SubstitutionThreat
    run = Path(args.run)
    model, meta = load_model(run / f"{args.checkpoint}.safetensors" if run.is_dir() else run)
    variant = (meta.get("data") or {}).get("variant")
    ds = load_dataset("sst2", data_dir=args.data_dir, **({"variant": variant} if variant else {}))
    x, y = get_modality("text").eval_split(ds, args.attack_size)
    params = {"word": {"max_candidates": args.max_candidates, "min_similarity": args.min_similarity}, "char": {}}
    threat = SubstitutionThreat(args.max_share)
    t0 = time.perf_counter()
    doc = {"checkpoint": meta["path"], "n": len(x), "threat": threat.to_dict(), "attacks": {}}
    for name in args.attacks:
        res = evaluate(model, x, y, threat, attacks=[(name, params[name])], seed=args.seed, batch_size=64)
        rec = res.attacks[0]
        doc["clean_accuracy"] = res.clean_accuracy
        doc["attacks"][name] = {"accuracy": res.robust_accuracy, "seconds": rec["seconds"], "params": rec["params"],
                                **rec.get("details", {})}
    res = evaluate(model, x, y, threat, attacks=[(n, params[n]) for n in args.attacks], seed=args.seed, batch_size=64)
    doc["worst_case_accuracy"] = res.robust_accuracy
    doc["wall_seconds"] = time.perf_counter() - t0
    doc["command"] = " ".join([sys.executable] + sys.argv)
    _merge("attack", run.name, doc)
    for name, a in doc["attacks"].items():
        logging.info("%s on %s: clean %.4f -> %.4f (share changed %.3f, queries %.0f)", name, args.run,
                     doc["clean_accuracy"], a["accuracy"], a["mean_share_changed"], a["mean_queries"])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    t = sub.add_parser("train")
    t.add_argument("--config", required=True)
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--data-dir", default=os.environ.get("ROBUSTKIT_DATA"))
    a = sub.add_parser("attack")
    a.add_argument("--run", required=True)
    a.add_argument("--checkpoint", default="last", choices=["last", "best"])
    a.add_argument("--data-dir", default=os.environ.get("ROBUSTKIT_DATA"))
    a.add_argument("--attack-size", type=int, default=872)
    a.add_argument("--attacks", nargs="+", default=["word", "char"])
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-candidates", type=int, default=12, help="word attack: synonyms tried per word")
    a.add_argument("--max-share", type=float, default=0.2, help="most words changed, as a share of the sentence")
    a.add_argument("--min-similarity", type=float, default=0.8, help="MiniLM sentence-embedding cosine floor")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"train": stage_train, "attack": stage_attack}[args.stage](args)


if __name__ == "__main__":
    main()
