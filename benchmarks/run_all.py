"""`make bench`: run every benchmark in turn (long: tens of minutes on 2 cores)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
data_dir = os.environ.get("ROBUSTKIT_DATA")
SCRIPTS = [["attack_speed.py"], ["training_cost.py"], ["awp.py"] + (["--data-dir", data_dir] if data_dir else [])]
for extra in ("audit_vs_autoattack.py", "text_sst2.py"):
    if (HERE / extra).is_file():
        SCRIPTS.append([extra])

failed = []
for script in SCRIPTS:
    print(f"\n== {script[0]} ==", flush=True)
    rc = subprocess.call([sys.executable, str(HERE / script[0]), *script[1:]])
    if rc != 0:
        failed.append(script[0])
sys.exit(1 if failed else 0)
