"""`robustkit audit`: the whole audit of a model, for images and texts alike -> audit.json/.md/.html."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import (ALLOW_DOWNLOAD, AMP, DATA, DATA_DIR, DATA_OPTION, DEVICE, EPS, JSON_OUT, LIMIT, MODEL_ARG, NORM,
                      PRESET, SEED, SWEEP, TARGET, USER_ERRORS, VERBOSE, WEIGHTS, WHICH, fail, given, load_target,
                      parse_list, parse_params, pct, progress, rank, setup_logging, write_or_rescue)


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
    sweep_preset: str = typer.Option("quick", help="Preset of the eps sweep's points (the headline eps always uses "
                                                    "--preset; the report names each point's preset)."),
    noise: Optional[str] = typer.Option(None, help="Comma-separated Gaussian noise sigmas, e.g. 0.05,0.1 (images)."),
    certify_sigma: Optional[float] = typer.Option(None, help="Also certify with randomized smoothing (images)."),
    certify_n: int = typer.Option(1000, help="Noise samples per input for certification (N)."),
    certify_limit: int = typer.Option(100, help="Certify only the first N samples."),
    surrogate: Optional[str] = typer.Option(None, help="A surrogate model (any kind the first argument takes) for a "
                                                        "transfer attack; how non-differentiable (ONNX) models are "
                                                        "attacked besides Square."),
    limit: Optional[int] = LIMIT,
    which: str = WHICH,
    weights: Optional[str] = WEIGHTS,
    allow_download: bool = ALLOW_DOWNLOAD,
    model_arg: List[str] = MODEL_ARG,
    data_option: List[str] = DATA_OPTION,
    device: str = DEVICE,
    amp: bool = AMP,
    out: Optional[Path] = typer.Option(None, help="Output folder (default: the run folder)."),
    max_minutes: Optional[float] = typer.Option(None, help="Time budget; the report says what was cut."),
    seed: int = SEED,
    seeds: int = typer.Option(1, help="Repeat the randomized attacks with K seeds; worst case + spread."),
    batch_size: int = typer.Option(256),
    examples: int = typer.Option(8, help="Example pairs in the report's gallery."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the saved state of an interrupted audit and start "
                                                       "over (by default a re-run resumes it)."),
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Audit a model: attack ensemble (per-sample worst case), sanity checks, eps sweep, noise and
    certification (images) -> audit.json, audit.md, audit.html."""
    from ..distributed import init_from_env
    from ..checkpoint import ensure_writable
    from ..evaluation import run_audit, write_report
    from ..evaluation.audit import training_curve_from_metrics
    setup_logging(verbose)
    try:
        init_from_env("cpu")  # under torchrun: the ranks share the attack batches (gloo)
        sweep_list, noise_list = parse_list(sweep, "sweep"), parse_list(noise, "noise")
        t = load_target(target, data, data_dir, seed, which, weights=weights, allow_download=allow_download,
                        model_args=model_arg, data_options=data_option).place(device, amp)
        threat = t.threat(eps, norm)
        x, y = t.eval_split(limit)
        if rank() == 0:  # found now, not after the attacks
            ensure_writable(out or t.run_dir)
        # Each finished chunk of the cascade is saved here: a killed audit re-run with the same command
        # resumes; a different model, data, eps or preset refuses the folder (--fresh starts over).
        state_dir = Path(out or t.run_dir) / ".audit-state"
        if given(fresh, False) and rank() == 0:
            import shutil
            shutil.rmtree(state_dir, ignore_errors=True)
        sur = None
        if surrogate is not None:
            from ..models.foreign import load_any
            sur = load_any(surrogate)[0].to(t.device)
            if getattr(t.model, "robustkit_differentiable", True) is False and \
                    getattr(t.model, "robustkit_float_twin", None) is None:
                # A model without gradients (ONNX) has no float twin of its own: the surrogate is its transfer source.
                t.model.robustkit_float_twin = lambda: sur
        doc = run_audit(t.model, x, y, threat, preset=preset, attacks=_ensemble(attack_names, param), seed=seed,
                        seeds=seeds, batch_size=batch_size, max_minutes=max_minutes, sweep=sweep_list,
                        sweep_preset=sweep_preset,
                        noise_sigmas=noise_list, certify_sigma=certify_sigma, certify_n=certify_n,
                        certify_limit=certify_limit, surrogate=sur, class_names=t.ds.class_names,
                        checkpoint=t.checkpoint_doc(), data={"name": t.data_name, "split": "test", "limit": limit},
                        gallery=examples, progress=progress(json_out), state_dir=state_dir,
                        # the gradient-masking checks attack the model with gradients: moot (and refused) without them
                        sanity=getattr(t.model, "robustkit_differentiable", True) is not False,
                        model_info=model_info(t),
                        training_curve=training_curve_from_metrics(t.run_dir / "metrics.jsonl"))
        if rank() != 0:  # rank 0 writes and prints the report for the job
            return
        paths = write_or_rescue(lambda: write_report(doc, out or t.run_dir), doc, "audit")
    except USER_ERRORS as err:
        fail(err)
        return
    if json_out:
        typer.echo(json.dumps(doc, indent=1))
    else:
        for line in summary(doc):
            typer.echo(line)
        typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['html']}")
    if doc["verdict"]["status"] == "fail":
        # A number that the sanity checks reject must not pass a CI gate silently: exit 1, as `check` does.
        typer.secho(f"sanity FAIL ({', '.join(doc['verdict']['failed'])}): the robust accuracy above is not "
                    "trustworthy (gradient masking or a broken model); see the report's sanity section. Exit code 1.",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(SANITY_FAIL_EXIT)


def model_info(t) -> dict:
    """The report header's model facts from the checkpoint metadata (foreign models record fewer: None there)."""
    m = t.meta
    spec, method, threat = m.get("model") or {}, m.get("method") or {}, m.get("threat") or {}
    return {"architecture": spec.get("name") or m.get("kind"), "method": method.get("name"),
            "training_eps": threat.get("eps"), "training_norm": threat.get("norm"),
            "run_folder": str(t.run_dir) if t.run_dir.is_dir() else None}


# Exit codes of `audit` (README "Audit"): 0 done, 1 done but the sanity checks failed, 2 bad input.
SANITY_FAIL_EXIT = 1


def summary(doc: dict) -> list[str]:
    ev = doc["evaluation"]
    lines = [f"{doc.get('threat_description', doc['threat'])}  preset {ev['preset']} ({ev['mode']})  n={ev['n']}",
             f"clean accuracy  {pct(ev['clean_accuracy'])}", f"robust accuracy {pct(ev['robust_accuracy'])}"]
    lines += [f"  {a['name']:<9} broke {a['n_broken']:>5} of {a['n_attacked']:>5} in {a['seconds']:.1f}s ({a['status']})"
              for a in ev["attacks"]]
    v = doc["verdict"]
    lines.append(f"sanity: {v['status'].upper()}" + (f" (failed: {', '.join(v['failed'])})" if v["failed"] else "")
                 + (f" (warnings: {', '.join(v.get('warned', []))})" if v.get("warned") else ""))
    # Each check that did not pass, by name, with its message (what it saw and what to do about it).
    for c in (doc.get("preflight") or []) + (doc.get("sanity") or []):
        if c.get("status") in ("warn", "fail"):
            lines.append(f"  {c['status'].upper()} {c['name']}: {c.get('message', '')}")
    lines += [f"cut: {c}" for c in doc.get("cut", [])]
    return lines
