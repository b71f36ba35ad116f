"""CLI commands of the audit: ``audit``, ``check``, ``compare``, ``certify`` (registered by cli.py).

A thin layer over :mod:`robustkit.evaluation`: it loads the checkpoint and the data, refuses a data
set that does not match the checkpoint's data spec, runs the Python API and prints/writes results.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)


def _progress(json_out: bool) -> bool:
    """Progress bars only for people: a TTY, not CI, not --json."""
    return sys.stderr.isatty() and not os.environ.get("CI") and not json_out


def _fail(err: Exception) -> None:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def parse_list(text: Optional[str], name: str) -> Optional[list[float]]:
    """'0,0.02,8/255' -> [0.0, 0.02, 0.0313...]; negatives are refused with the argument named."""
    if text is None:
        return None
    from ._validation import parse_fraction
    values = [parse_fraction(v, name) for v in text.split(",") if v.strip()]
    for v in values:
        if v < 0:
            raise ValueError(f"The '{name}' option must be a comma-separated list of numbers >= 0. Got {v} in "
                             f"{text!r} instead.")
    if not values:
        raise ValueError(f"The '{name}' option must list at least one number. Got {text!r} instead.")
    return values


def load_target(target: str, data: str, data_dir: Optional[str], limit: Optional[int], seed: int):
    """(model, meta, dataset, run folder) with the checkpoint's data spec checked against --data."""
    from .checkpoint import load_model
    from .data import load_dataset
    model, meta = load_model(target)
    ds = load_dataset(data, data_dir=data_dir, seed=seed)
    if limit is not None:
        from ._validation import check_number
        limit = check_number(limit, "limit", owner="audit", low=1, integer=True)
        ds.x_test, ds.y_test = ds.x_test[:limit], ds.y_test[:limit]
    spec, have = meta.get("data") or {}, ds.spec()
    for key in ("input_shape", "num_classes"):
        if spec.get(key) is None:
            continue
        want = list(spec[key]) if key == "input_shape" else int(spec[key])
        got = have[key]
        if want != got:
            raise ValueError(f"The checkpoint {meta['path']!r} was trained on data with {key}={want} "
                             f"({spec.get('name', '?')!r}), but --data {data!r} gives {key}={got}. "
                             "Audit it on the data it was trained for.")
    if spec.get("name") and spec["name"] != data:
        typer.secho(f"warning: the checkpoint was trained on {spec['name']!r}, auditing on {data!r}.",
                    fg=typer.colors.YELLOW, err=True)
    run_dir = Path(target) if Path(target).is_dir() else Path(meta["path"]).parent
    return model, meta, ds, run_dir


def _threat(meta: dict, eps: Optional[str], norm: Optional[str], ds):
    from ._validation import parse_fraction
    from .threat import ThreatModel
    saved = meta.get("threat") or {}
    if eps is None and "eps" not in saved:
        raise ValueError("The 'eps' option is required: the checkpoint records no threat model. Pass e.g. --eps 0.1.")
    value = parse_fraction(eps, "eps") if eps is not None else saved["eps"]
    return ThreatModel(norm or saved.get("norm", "linf"), value, tuple(ds.bounds))


def _is_text_data(data: str) -> bool:
    try:
        from .text import is_text_dataset
    except ImportError:  # the optional `text` extra is not installed
        return False
    return is_text_dataset(data)


def register(app: typer.Typer) -> None:
    """Add the audit commands to the robustkit CLI."""

    @app.command()
    def audit(
        target: str = typer.Argument(..., help="Run folder or .safetensors checkpoint."),
        data: str = typer.Option(..., help="Dataset name (robustkit list)."),
        data_dir: Optional[str] = typer.Option(None, help="Folder (or file) holding the data."),
        preset: str = typer.Option("standard", help="quick | standard | thorough"),
        eps: Optional[str] = typer.Option(None, help="Threat radius, e.g. 0.1 or 8/255 (default: the checkpoint's)."),
        norm: Optional[str] = typer.Option(None, help="linf | l2 (default: the checkpoint's, else linf)."),
        sweep: Optional[str] = typer.Option(None, help="Comma-separated eps list for the curve, e.g. 0,0.02,0.05,0.1."),
        noise: Optional[str] = typer.Option(None, help="Comma-separated Gaussian noise sigmas, e.g. 0.05,0.1."),
        certify_sigma: Optional[float] = typer.Option(None, help="Also certify with randomized smoothing."),
        certify_n: int = typer.Option(1000, help="Noise samples per input for certification (N)."),
        certify_limit: int = typer.Option(100, help="Certify only the first N test samples."),
        surrogate: Optional[str] = typer.Option(None, help="Checkpoint of a surrogate model for a transfer attack."),
        limit: Optional[int] = typer.Option(None, help="Audit only the first N test samples."),
        out: Optional[Path] = typer.Option(None, help="Output folder (default: the run folder)."),
        max_minutes: Optional[float] = typer.Option(None, help="Time budget; the report says what was cut."),
        seed: int = typer.Option(0, help="Seed of every randomized attack."),
        seeds: int = typer.Option(1, help="Repeat the randomized attacks with K seeds; worst case + spread."),
        batch_size: int = typer.Option(256),
        json_out: bool = typer.Option(False, "--json", help="Print the audit JSON."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Audit a model: ensemble attacks, sanity checks, sweep, certification -> audit.json/.md/.html."""
        _logging(verbose)
        from .evaluation import run_audit, write_report
        if _is_text_data(data):  # transformer text classifiers: word/char attacks, their own report
            from .text import audit_text, render_text_report
            try:
                doc = audit_text(target, data, data_dir, limit=limit or 200, seed=seed)
                files = render_text_report(doc, out or (Path(target) if Path(target).is_dir() else Path(target).parent))
            except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
                _fail(err)
                return
            typer.echo(json.dumps(doc, indent=2, default=str) if json_out else f"text audit written: {files}")
            return
        try:
            sweep_list, noise_list = parse_list(sweep, "sweep"), parse_list(noise, "noise")
            model, meta, ds, run_dir = load_target(target, data, data_dir, limit, seed)
            threat = _threat(meta, eps, norm, ds)
            sur = None
            if surrogate is not None:
                from .checkpoint import load_model
                sur = load_model(surrogate)[0]
            doc = run_audit(model, ds.x_test, ds.y_test, threat, preset=preset, seed=seed, seeds=seeds,
                            batch_size=batch_size, max_minutes=max_minutes, sweep=sweep_list, noise_sigmas=noise_list,
                            certify_sigma=certify_sigma, certify_n=certify_n, certify_limit=certify_limit,
                            surrogate=sur, class_names=ds.class_names,
                            checkpoint={"path": meta["path"], "sha256": meta["sha256"], "model": meta.get("model"),
                                        "method": meta.get("method"), "threat": meta.get("threat")},
                            data={"name": ds.name, "split": "test", "limit": limit}, progress=_progress(json_out))
            paths = write_report(doc, out or run_dir)
        except USER_ERRORS as err:
            _fail(err)
        if json_out:
            typer.echo(json.dumps(doc, indent=1))
            return
        ev = doc["evaluation"]
        for line in _summary(ev, doc):
            typer.echo(line)
        typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['html']}")

    @app.command()
    def check(
        target: str = typer.Argument(..., help="Run folder or .safetensors checkpoint."),
        data: str = typer.Option(..., help="Dataset name."),
        data_dir: Optional[str] = typer.Option(None),
        limit: int = typer.Option(256, help="Check on the first N test samples."),
        seed: int = typer.Option(0, help="Seed (data loading)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Preflight contract check: bounds, logits vs probabilities, determinism, gradients, eval mode."""
        from .evaluation import preflight, worst_status
        try:
            model, meta, ds, _ = load_target(target, data, data_dir, limit, seed)
            checks = preflight(model, ds.x_test, ds.y_test, bounds=tuple(ds.bounds))
        except USER_ERRORS as err:
            _fail(err)
        status = worst_status(checks)
        if json_out:
            typer.echo(json.dumps({"status": status, "checks": checks}, indent=1))
        else:
            for c in checks:
                typer.echo(f"{c['status'].upper():<5} {c['name']:<18} {c['message']}")
            typer.echo(f"overall: {status.upper()}")
        if status == "fail":
            raise typer.Exit(1)

    @app.command()
    def compare(
        audits: List[str] = typer.Argument(..., help="Run folders or audit.json files."),
        out: Path = typer.Option(Path("."), help="Folder for compare.md and compare.json."),
        seed: int = typer.Option(0, help="Unused (comparisons are not random); accepted like every command."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Side-by-side table of several audits (clean/robust accuracy with CIs, threat, preset, verdict)."""
        from .checkpoint import atomic_write_text
        from .evaluation import load_audit
        try:
            rows = [_compare_row(a, load_audit(a)) for a in audits]
        except (*USER_ERRORS, json.JSONDecodeError) as err:
            _fail(err)
        header = ["audit", "threat", "preset", "clean accuracy", "robust accuracy", "verdict", "seconds"]
        md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                       + ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "compare.md", md + "\n")
        atomic_write_text(out / "compare.json", json.dumps(rows, indent=1))
        typer.echo(json.dumps(rows, indent=1) if json_out else md)

    @app.command("certify")
    def certify_cmd(
        target: str = typer.Argument(..., help="Run folder or .safetensors checkpoint."),
        data: str = typer.Option(..., help="Dataset name."),
        data_dir: Optional[str] = typer.Option(None),
        sigma: float = typer.Option(0.25, help="Noise level of the smoothed classifier."),
        n0: int = typer.Option(100, help="Samples to pick the top class."),
        n: int = typer.Option(1000, help="Samples to bound its probability."),
        alpha: float = typer.Option(0.001, help="Failure probability of the certificate."),
        radii: str = typer.Option("0,0.25,0.5,0.75,1.0", help="L2 radii to report certified accuracy at."),
        limit: int = typer.Option(100, help="Certify the first N test samples."),
        out: Optional[Path] = typer.Option(None, help="Folder for certify.json (default: the run folder)."),
        seed: int = typer.Option(0, help="Seed of the noise."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Randomized-smoothing certification (Cohen et al. 2019): certified accuracy at L2 radii."""
        from .checkpoint import atomic_write_text
        from .evaluation import certify
        try:
            radii_list = parse_list(radii, "radii")
            model, meta, ds, run_dir = load_target(target, data, data_dir, limit, seed)
            res = certify(model, ds.x_test, ds.y_test, sigma, n0=n0, n=n, alpha=alpha, radii=radii_list, seed=seed,
                          progress=_progress(json_out))
        except USER_ERRORS as err:
            _fail(err)
        res["checkpoint"] = {"path": meta["path"], "sha256": meta["sha256"]}
        folder = out or run_dir
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "certify.json", json.dumps(res, indent=1))
        if json_out:
            typer.echo(json.dumps(res, indent=1))
            return
        typer.echo(f"sigma={sigma} N={n} alpha={alpha} on {res['num_samples']} samples; "
                   f"abstain {100 * res['abstain_rate']['value']:.1f}%, smoothed accuracy "
                   f"{100 * res['smoothed_accuracy']['value']:.1f}%")
        for r, a in zip(res["radii"], res["certified_accuracy"]):
            typer.echo(f"  radius {r:<6g} certified accuracy {100 * a['value']:.1f}% "
                       f"[{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]")
        typer.echo(f"wrote {folder / 'certify.json'}")


def _pct(a: dict) -> str:
    return "n/a" if a.get("value") is None else f"{100 * a['value']:.2f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"


def _summary(ev: dict, doc: dict) -> list[str]:
    th = doc["threat"]
    lines = [f"threat {th['norm']} eps={th['eps']:.6g}  preset {ev['preset']} ({ev['mode']})  n={ev['n']}",
             f"clean accuracy  {_pct(ev['clean_accuracy'])}", f"robust accuracy {_pct(ev['robust_accuracy'])}"]
    lines += [f"  {a['name']:<9} broke {a['n_broken']:>5} of {a['n_attacked']:>5} in {a['seconds']:.1f}s ({a['status']})"
              for a in ev["attacks"]]
    lines.append(f"sanity: {doc['verdict']['status'].upper()}"
                 + (f" (failed: {', '.join(doc['verdict']['failed'])})" if doc["verdict"]["failed"] else ""))
    lines += [f"cut: {c}" for c in doc.get("cut", [])]
    return lines


def _compare_row(name: str, doc: dict) -> dict:
    ev, th = doc["evaluation"], doc["threat"]
    return {"audit": name, "threat": f"{th['norm']} eps={th['eps']:.4g}", "preset": ev["preset"],
            "clean accuracy": _pct(ev["clean_accuracy"]), "robust accuracy": _pct(ev["robust_accuracy"]),
            "verdict": doc["verdict"]["status"], "seconds": doc["provenance"]["wall_seconds"]}
