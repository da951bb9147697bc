"""What every benchmark script does at the end: write its results atomically as JSON and say where."""
import json
from pathlib import Path

from depthnb.core import atomic_write


def write_results(res: dict, out) -> Path:
    "Write `res` to `out` (JSON) atomically (`depthnb.core.atomic_write`); print the path."
    out = atomic_write(out, json.dumps(res, indent=2) + '\n')
    print(f'wrote {out}')
    return out
