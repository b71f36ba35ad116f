"""`robustkit attack`: one attack on a model's evaluation split; writes attack.json, attack.md and examples."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import (ALLOW_DOWNLOAD, AMP, DEVICE, DATA, DATA_DIR, DATA_OPTION, EPS, JSON_OUT, LIMIT, MODEL_ARG, NORM, SEED, TARGET,
                      USER_ERRORS, VERBOSE, WEIGHTS, WHICH, Target, fail, given, load_target, parse_params,
                      progress, setup_logging)


def _quick_model(model: str, data: str, data_dir: Optional[str], out: Path, epochs: int, seed: int,
                 json_out: bool) -> str:
    """Without a checkpoint: train `model` for a few epochs (standard) and return its run folder."""
    from ..config import TrainConfig
    from ..training import train as train_fn
    cfg = TrainConfig(name="model", out_dir=str(out), data=data, data_dir=data_dir, model=model, epochs=epochs,
                      seed=seed, eval_size=0, optimizer="adam", lr=1e-3, schedule="constant", weight_decay=0.0)
    return str(train_fn(cfg, overwrite=True, progress=progress(json_out)).run_dir)


def render_markdown(doc: dict) -> str:
    lines = [f"# {doc['attack']['attack']} attack", "",
             f"- model: `{doc['source'].get('checkpoint')}`", f"- data: {doc['data']}, first {doc['n']} evaluation "
             f"samples; seed {doc['seed']}", f"- threat: {doc['threat_description']}", "",
             "| clean accuracy | robust accuracy | seconds | samples / s |", "|---|---|---|---|",
             f"| {100 * doc['clean_accuracy']:.2f}% | {100 * doc['robust_accuracy']:.2f}% | {doc['seconds']:.2f} | "
             f"{doc['samples_per_second']:.1f} |", "",
             f"Attack parameters: `{json.dumps(doc['attack'], default=str)}`", "",
             "Files: " + ", ".join(f"`{Path(p).name}`" for p in doc["files"].values()), ""]
    return "\n".join(lines)


@app.command()
def attack(
    target: Optional[str] = TARGET,
    model: Optional[str] = typer.Option(None, help="Without a checkpoint: train this model quickly (standard)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", hidden=True,
                                             help="Deprecated: give the checkpoint as the first argument."),
    data: Optional[str] = DATA,
    data_dir: Optional[str] = DATA_DIR,
    attack_name: Optional[str] = typer.Option(None, "--attack", help="Attack name (robustkit list); default: pgd "
                                                                     "for images, word for texts."),
    eps: Optional[str] = EPS,
    norm: Optional[str] = NORM,
    steps: Optional[int] = typer.Option(None),
    step_size: Optional[float] = typer.Option(None),
    restarts: Optional[int] = typer.Option(None),
    param: List[str] = typer.Option([], "--param", help="Extra attack parameter key=value (repeatable)."),
    limit: Optional[int] = typer.Option(1000, help="Attack the first N evaluation samples."),
    batch_size: int = typer.Option(500),
    train_epochs: int = typer.Option(1, help="Epochs for the quick model when no checkpoint is given."),
    which: str = WHICH,
    weights: Optional[str] = WEIGHTS,
    allow_download: bool = ALLOW_DOWNLOAD,
    model_arg: List[str] = MODEL_ARG,
    data_option: List[str] = DATA_OPTION,
    device: str = DEVICE,
    amp: bool = AMP,
    surrogate: Optional[str] = typer.Option(None, help="Craft on this surrogate model (any kind the first argument "
                                                        "takes) and transfer; the default attack becomes transfer."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: <run folder>/attack-<name>)."),
    seed: int = SEED,
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Attack a model on its dataset's evaluation split; prints clean and robust accuracy and the time taken."""
    from .. import attacks
    from ..checkpoint import atomic_write_text, ensure_writable
    from ..evaluation.robustness import attack_dataset
    setup_logging(verbose)
    if checkpoint is not None:
        typer.secho("note: --checkpoint is deprecated; give the checkpoint as the first argument: "
                    f"robustkit attack {checkpoint} ...", fg=typer.colors.YELLOW, err=True)
        target = target or checkpoint
    try:
        if target is None and model is not None:
            typer.secho(f"note: no checkpoint given: training {model} on {data or 'digits'} for {train_epochs} "
                        f"epoch(s) (standard, no defence) to attack it; give a run folder to attack your own model.",
                        fg=typer.colors.YELLOW, err=True)
            target = _quick_model(model, data or "digits", data_dir, out or Path("runs/attack"), train_epochs, seed,
                                  json_out)
        t: Target = load_target(target, data, data_dir, seed, which, weights=weights, allow_download=allow_download,
                              model_args=model_arg, data_options=data_option).place(device, amp)
        threat = t.threat(eps, norm)
        params = {k: v for k, v in {"steps": steps, "step_size": step_size, "restarts": restarts}.items()
                  if v is not None}
        params.update(parse_params(param))
        if given(surrogate, None) is not None:  # transfer: craft on the surrogate, query the target for predictions
            from ..models.foreign import load_any
            params["surrogate"] = load_any(surrogate)[0].to(t.device)
            name = attack_name or "transfer"
        elif getattr(t.model, "robustkit_differentiable", True) is False:
            name = attack_name or "square"  # no gradients: the black-box attack by default
        else:
            name = attack_name or t.modality.presets["quick"][0][0]
        atk = attacks.create(name, threat, seed=seed, **params)
        x, y = t.eval_split(limit)
        folder = out or t.run_dir / f"attack-{name}"
        ensure_writable(folder)  # found now, not after the attack
        t0 = time.perf_counter()
        details: list = []
        x_adv, pred_clean, pred_adv = attack_dataset(t.model, x, y, atk, batch_size=batch_size,
                                                     progress=progress(json_out), details=details)
        seconds = time.perf_counter() - t0
        files = t.modality.save_examples(folder, x, x_adv, y, pred_clean, pred_adv, t.ds.class_names)
    except USER_ERRORS as err:
        fail(err)
        return
    n = int(y.shape[0])
    y_cpu = y.cpu()
    doc = {"modality": t.modality.name, "clean_accuracy": float((pred_clean == y_cpu).float().mean()),
           "robust_accuracy": float((pred_adv == y_cpu).float().mean()), "n": n, "seconds": seconds,
           "samples_per_second": n / max(seconds, 1e-9), "attack": atk.params(),
           "threat_description": t.modality.describe_threat(threat), "data": t.data_name, "seed": seed,
           "source": {"checkpoint": t.meta["path"], "sha256": t.meta["sha256"]},
           "files": {**files, "json": str(folder / "attack.json"), "markdown": str(folder / "attack.md")}}
    if details and hasattr(atk, "summarize"):
        doc["details"] = atk.summarize(details)
    atomic_write_text(folder / "attack.json", json.dumps(doc, indent=2, default=str))
    atomic_write_text(folder / "attack.md", render_markdown(doc))
    if json_out:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    typer.echo(f"{name} ({doc['threat_description']}) on {n} {t.data_name} evaluation samples")
    typer.echo(f"  clean accuracy : {doc['clean_accuracy']:.4f}")
    typer.echo(f"  robust accuracy: {doc['robust_accuracy']:.4f}")
    typer.echo(f"  time           : {seconds:.2f}s ({doc['samples_per_second']:.0f} samples/s)")
    typer.echo(f"  wrote {folder}/attack.json, attack.md, " + ", ".join(Path(p).name for p in files.values()))
