"""Honest robustness evaluation: per-sample worst case over an attack ensemble, sanity checks,
randomized-smoothing certification, and reports rendered from JSON.

``evaluate`` is also exposed as ``robustkit.evaluate`` (a stable public name).
"""
from .audit import PreflightError, run_audit
from .certify import certify, certify_substitutions
from .report import load_audit, render_html, render_markdown, write_report
from .robustness import PRESETS, RobustnessResult, attack_dataset, evaluate, noise_robustness, sweep_eps
from .sanity import CheckContext, gradient_masking_checks, make_check, preflight, register_check, worst_status
from .stats import clopper_pearson, wilson

__all__ = ["PRESETS", "CheckContext", "PreflightError", "RobustnessResult", "attack_dataset", "certify",
           "certify_substitutions", "clopper_pearson", "evaluate", "gradient_masking_checks", "load_audit",
           "make_check", "noise_robustness", "preflight", "register_check", "render_html", "render_markdown",
           "run_audit", "sweep_eps", "wilson", "worst_status", "write_report"]
