"""Honest robustness evaluation: per-sample worst case over an attack ensemble, sanity checks,
randomized-smoothing certification, and reports rendered from JSON.

``evaluate`` is also exposed as ``robustkit.evaluate`` (a stable public name).
"""
from .audit import PreflightError, run_audit
from .certify import certify
from .report import load_audit, render_html, render_markdown, write_report
from .robustness import PRESETS, RobustnessResult, evaluate, noise_robustness, sweep_eps
from .sanity import gradient_masking_checks, preflight, worst_status
from .stats import clopper_pearson, wilson

__all__ = ["PRESETS", "PreflightError", "RobustnessResult", "certify", "clopper_pearson", "evaluate",
           "gradient_masking_checks", "load_audit", "noise_robustness", "preflight", "render_html",
           "render_markdown", "run_audit", "sweep_eps", "wilson", "worst_status", "write_report"]
