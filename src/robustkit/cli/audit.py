"""`robustkit audit`: the whole audit of a model, for images and texts alike -> audit.json/.md/.html."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import (DATA, DATA_DIR, EPS, JSON_OUT, LIMIT, NORM, PRESET, SEED, SWEEP, TARGET, USER_ERRORS, VERBOSE,
                      WHICH, fail, load_target, parse_list, parse_params, pct, progress, rank, setup_logging)


def _ensemble(names: List[str], params: List[str]) -> Optional[list]:
    """--attack NAME (repeatable) replaces the preset's ensemble; --param key=value applies to all of them."""
    if not names:
        return None
    shared = parse_params(params)
    return [(n, dict(shared)) for n in names]


@app.command()
def audit(
    target: Optional[str] = TARGET,
    data: Optional[str] = DATA,
    data_dir: Optional[str] = DATA_DIR,
    preset: str = PRESET,
    attack_names: List[str] = typer.Option([], "--attack", help="Run these attacks (repeatable) instead of the "
                                                                 "preset's ensemble."),
    param: List[str] = typer.Option([], "--param", help="Parameter key=value for the --attack ensemble."),
    eps: Optional[str] = EPS,
    norm: Optional[str] = NORM,
    sweep: Optional[str] = SWEEP,
    noise: Optional[str] = typer.Option(None, help="Comma-separated Gaussian noise sigmas, e.g. 0.05,0.1 (images)."),
    certify_sigma: Optional[float] = typer.Option(None, help="Also certify with randomized smoothing (images)."),
    certify_n: int = typer.Option(1000, help="Noise samples per input for certification (N)."),
    certify_limit: int = typer.Option(100, help="Certify only the first N samples."),
    surrogate: Optional[str] = typer.Option(None, help="Checkpoint of a surrogate model for a transfer attack."),
    limit: Optional[int] = LIMIT,
    which: str = WHICH,
    out: Optional[Path] = typer.Option(None, help="Output folder (default: the run folder)."),
    max_minutes: Optional[float] = typer.Option(None, help="Time budget; the report says what was cut."),
    seed: int = SEED,
    seeds: int = typer.Option(1, help="Repeat the randomized attacks with K seeds; worst case + spread."),
    batch_size: int = typer.Option(256),
    examples: int = typer.Option(8, help="Example pairs in the report's gallery."),
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Audit a model: attack ensemble (per-sample worst case), sanity checks, eps sweep, noise and
    certification (images) -> audit.json, audit.md, audit.html."""
    from ..distributed import init_from_env
    from ..evaluation import run_audit, write_report
    setup_logging(verbose)
    try:
        init_from_env("cpu")  # under torchrun: the ranks share the attack batches (gloo)
        sweep_list, noise_list = parse_list(sweep, "sweep"), parse_list(noise, "noise")
        t = load_target(target, data, data_dir, seed, which)
        threat = t.threat(eps, norm)
        x, y = t.eval_split(limit)
        sur = None
        if surrogate is not None:
            from ..checkpoint import load_model
            sur = load_model(surrogate)[0]
        doc = run_audit(t.model, x, y, threat, preset=preset, attacks=_ensemble(attack_names, param), seed=seed,
                        seeds=seeds, batch_size=batch_size, max_minutes=max_minutes, sweep=sweep_list,
                        noise_sigmas=noise_list, certify_sigma=certify_sigma, certify_n=certify_n,
                        certify_limit=certify_limit, surrogate=sur, class_names=t.ds.class_names,
                        checkpoint=t.checkpoint_doc(), data={"name": t.data_name, "split": "test", "limit": limit},
                        gallery=examples, progress=progress(json_out))
        if rank() != 0:  # rank 0 writes and prints the report for the job
            return
        paths = write_report(doc, out or t.run_dir)
    except USER_ERRORS as err:
        fail(err)
        return
    if json_out:
        typer.echo(json.dumps(doc, indent=1))
        return
    for line in summary(doc):
        typer.echo(line)
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['html']}")


def summary(doc: dict) -> list[str]:
    ev = doc["evaluation"]
    lines = [f"{doc.get('threat_description', doc['threat'])}  preset {ev['preset']} ({ev['mode']})  n={ev['n']}",
             f"clean accuracy  {pct(ev['clean_accuracy'])}", f"robust accuracy {pct(ev['robust_accuracy'])}"]
    lines += [f"  {a['name']:<9} broke {a['n_broken']:>5} of {a['n_attacked']:>5} in {a['seconds']:.1f}s ({a['status']})"
              for a in ev["attacks"]]
    lines.append(f"sanity: {doc['verdict']['status'].upper()}"
                 + (f" (failed: {', '.join(doc['verdict']['failed'])})" if doc["verdict"]["failed"] else ""))
    lines += [f"cut: {c}" for c in doc.get("cut", [])]
    return lines
