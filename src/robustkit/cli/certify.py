"""`robustkit certify`: randomized-smoothing certification — Gaussian noise for images (Cohen et al. 2019),
random word substitutions for texts (SAFER, Ye et al. 2020). The modality's ``continuous`` flag picks which."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import (ALLOW_DOWNLOAD, AMP, DATA, DATA_DIR, DATA_OPTION, DEVICE, JSON_OUT, MODEL_ARG, SEED, TARGET,
                      USER_ERRORS, WEIGHTS, WHICH, fail, load_target, parse_list, progress)

# Defaults per kind of input. Images: Cohen et al.'s N0=100, N=1000 (a forward pass of a small CNN is cheap).
# Texts: a transformer pass on CPU costs ~1000x more. N0=20 only picks the top class (a wrong pick can cause
# an abstention, never a wrong certificate); N=200 unanimous draws give pA >= 0.001^(1/200) = 0.966, i.e.
# a total-variation budget of 0.466 of the 0.5 reachable, where N=1000 buys 0.493 for five times the cost.
IMAGE_DEFAULTS = {"n0": 100, "n": 1000, "batch_size": 1000}
TEXT_DEFAULTS = {"n0": 20, "n": 200, "batch_size": 64}


def _ci(a: dict) -> str:
    return f"{100 * a['value']:.1f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"


def render_markdown(res: dict) -> str:
    if res.get("certificate") == "safer":
        return render_markdown_text(res)
    lines = ["# Randomized-smoothing certification", "",
             f"sigma={res['sigma']}, N0={res['n0']}, N={res['n']}, alpha={res['alpha']}, {res['num_samples']} samples; "
             f"abstain {100 * res['abstain_rate']['value']:.1f}%, smoothed accuracy "
             f"{100 * res['smoothed_accuracy']['value']:.1f}%", "", "| L2 radius | certified accuracy (95% CI) |",
             "|---|---|"]
    lines += [f"| {r:g} | {_ci(a)} |" for r, a in zip(res["radii"], res["certified_accuracy"])]
    return "\n".join(lines) + "\n"


def render_markdown_text(res: dict) -> str:
    cap = "all" if res["max_candidates"] is None else res["max_candidates"]
    lines = ["# Certified robustness to word substitutions (SAFER)", "",
             f"N0={res['n0']}, N={res['n']}, alpha={res['alpha']}, candidates={res['candidates']} (max {cap}), "
             f"{res['num_samples']} sentences, {res['seconds']:.1f} s", "",
             f"- abstain rate: {_ci(res['abstain_rate'])}",
             f"- smoothed accuracy (majority of the N draws, no abstention): {_ci(res['smoothed_accuracy'])}",
             f"- mean certified share of words: {100 * res['mean_certified_share']:.1f}%", "",
             "| word-share budget | certified accuracy (95% CI) |", "|---|---|"]
    lines += [f"| {s:g} | {_ci(a)} |" for s, a in zip(res["shares"], res["certified_accuracy"])]
    lines += ["", "Budget s: any substitution of at most floor(s * words) words (at least 1 for s > 0) from the "
              "word attack's candidate sets; budget 0 is the smoothed accuracy with abstention."]
    return "\n".join(lines) + "\n"


@app.command("certify")
def certify_cmd(
    target: Optional[str] = TARGET,
    data: Optional[str] = DATA,
    data_dir: Optional[str] = DATA_DIR,
    sigma: Optional[float] = typer.Option(None, help="Noise level of the smoothed classifier (images; default 0.25)."),
    n0: Optional[int] = typer.Option(None, help="Samples to pick the top class (default: images 100, texts 20)."),
    n: Optional[int] = typer.Option(None, help="Samples to bound its probability (default: images 1000, texts 200)."),
    alpha: float = typer.Option(0.001, help="Failure probability of the certificate."),
    radii: Optional[str] = typer.Option(None, help="L2 radii to report certified accuracy at (images; default "
                                                   "0,0.25,0.5,0.75,1.0)."),
    shares: Optional[str] = typer.Option(None, help="Word-share budgets to report certified accuracy at (texts; "
                                                    "default 0,0.05,0.1,0.2)."),
    max_candidates: Optional[int] = typer.Option(None, help="Cap on each word's substitutes (texts; default: all, "
                                                          "which covers the word attack at any cap)."),
    batch_size: Optional[int] = typer.Option(None, help="Model batch size (default: images 1000, texts 64)."),
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
    """Randomized-smoothing certification: certified accuracy at L2 radii (images) or word-share budgets (texts)."""
    from ..checkpoint import atomic_write_text
    from ..evaluation import certify, certify_substitutions
    try:
        radii_list = parse_list(radii, "radii")
        share_list = parse_list(shares, "shares")
        t = load_target(target, data, data_dir, seed, which, weights=weights, allow_download=allow_download,
                        model_args=model_arg, data_options=data_option).place(device, amp)
        continuous = t.modality.continuous
        # An option of the other kind of certificate is refused rather than silently ignored.
        foreign = {"--shares": shares, "--max-candidates": max_candidates} if continuous else {"--sigma": sigma,
                                                                                               "--radii": radii}
        for opt, value in foreign.items():
            if value is not None:
                raise ValueError(f"The '{opt.lstrip('-')}' option does not apply to {t.modality.name} data "
                                 f"({t.data_name!r}). Got {opt} {value} instead.")
        x, y = t.eval_split(limit)
        kind = IMAGE_DEFAULTS if continuous else TEXT_DEFAULTS
        common = {"n0": kind["n0"] if n0 is None else n0, "n": kind["n"] if n is None else n, "alpha": alpha,
                  "batch_size": kind["batch_size"] if batch_size is None else batch_size, "seed": seed,
                  "progress": progress(json_out)}
        if continuous:
            res = certify(t.model, x, y, 0.25 if sigma is None else sigma, radii=radii_list, **common)
        else:
            res = certify_substitutions(t.model, x, y, shares=share_list or [0.0, 0.05, 0.1, 0.2],
                                        max_candidates=max_candidates, **common)
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
