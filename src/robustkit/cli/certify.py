"""`robustkit certify`: randomized-smoothing certification (Cohen et al. 2019) of an image model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import (ALLOW_DOWNLOAD, AMP, DATA, DATA_DIR, DATA_OPTION, DEVICE, JSON_OUT, MODEL_ARG, SEED, TARGET,
                      USER_ERRORS, WEIGHTS, WHICH, fail, load_target, parse_list, progress)


def render_markdown(res: dict) -> str:
    lines = ["# Randomized-smoothing certification", "",
             f"sigma={res['sigma']}, N0={res['n0']}, N={res['n']}, alpha={res['alpha']}, {res['num_samples']} samples; "
             f"abstain {100 * res['abstain_rate']['value']:.1f}%, smoothed accuracy "
             f"{100 * res['smoothed_accuracy']['value']:.1f}%", "", "| L2 radius | certified accuracy (95% CI) |",
             "|---|---|"]
    lines += [f"| {r:g} | {100 * a['value']:.1f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}] |"
              for r, a in zip(res["radii"], res["certified_accuracy"])]
    return "\n".join(lines) + "\n"


@app.command("certify")
def certify_cmd(
    target: Optional[str] = TARGET,
    data: Optional[str] = DATA,
    data_dir: Optional[str] = DATA_DIR,
    sigma: float = typer.Option(0.25, help="Noise level of the smoothed classifier."),
    n0: int = typer.Option(100, help="Samples to pick the top class."),
    n: int = typer.Option(1000, help="Samples to bound its probability."),
    alpha: float = typer.Option(0.001, help="Failure probability of the certificate."),
    radii: str = typer.Option("0,0.25,0.5,0.75,1.0", help="L2 radii to report certified accuracy at."),
    limit: int = typer.Option(100, help="Certify the first N evaluation samples."),
    which: str = WHICH,
    weights: Optional[str] = WEIGHTS,
    allow_download: bool = ALLOW_DOWNLOAD,
    model_arg: List[str] = MODEL_ARG,
    data_option: List[str] = DATA_OPTION,
    device: str = DEVICE,
    amp: bool = AMP,
    out: Optional[Path] = typer.Option(None, help="Folder for certify.json/.md (default: the run folder)."),
    seed: int = SEED,
    json_out: bool = JSON_OUT,
) -> None:
    """Randomized-smoothing certification: certified accuracy at L2 radii (continuous inputs)."""
    from ..checkpoint import atomic_write_text
    from ..evaluation import certify
    try:
        radii_list = parse_list(radii, "radii")
        t = load_target(target, data, data_dir, seed, which, weights=weights, allow_download=allow_download,
                        model_args=model_arg, data_options=data_option).place(device, amp)
        if not t.modality.continuous:
            raise ValueError(f"Randomized-smoothing certification needs continuous inputs; {t.data_name!r} is "
                             f"{t.modality.name} data.")
        x, y = t.eval_split(limit)
        res = certify(t.model, x, y, sigma, n0=n0, n=n, alpha=alpha, radii=radii_list, seed=seed,
                      progress=progress(json_out))
    except USER_ERRORS as err:
        fail(err)
        return
    res["checkpoint"] = {"path": t.meta["path"], "sha256": t.meta["sha256"]}
    folder = out or t.run_dir
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "certify.json", json.dumps(res, indent=1))
    atomic_write_text(folder / "certify.md", render_markdown(res))
    if json_out:
        typer.echo(json.dumps(res, indent=1))
        return
    typer.echo(render_markdown(res))
    typer.echo(f"wrote {folder / 'certify.json'}, {folder / 'certify.md'}")
