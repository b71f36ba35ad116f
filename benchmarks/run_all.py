"""`make bench`: run the self-contained benchmarks in turn (tens of minutes on 2 cores).

`audit_vs_autoattack.py`, `audit_profile.py`, `hardening.py`, `hydra.py`, `serve_load.py`, `suspicion.py`,
`text_sst2.py`, `training_recipes.py` and `audit_checks.py` need trained runs, data or configs as arguments
and run for tens of minutes to hours; BENCHMARKS.md gives their commands.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
data_dir = os.environ.get("ROBUSTKIT_DATA")
SCRIPTS = [["attack_speed.py"], ["training_cost.py"], ["awp.py"] + (["--data-dir", data_dir] if data_dir else [])]

failed = []
for script in SCRIPTS:
    print(f"\n== {script[0]} ==", flush=True)
    rc = subprocess.call([sys.executable, str(HERE / script[0]), *script[1:]])
    if rc != 0:
        failed.append(script[0])
print("\nNot run here (they take runs, data or configs as arguments): audit_vs_autoattack.py, audit_profile.py, "
      "hardening.py, hydra.py, serve_load.py, suspicion.py, text_sst2.py, training_recipes.py, audit_checks.py — "
      "see BENCHMARKS.md for their commands.")
sys.exit(1 if failed else 0)
