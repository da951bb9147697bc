"""What every benchmark script does at the end: write its results atomically as JSON and say where."""
import json
import os
from pathlib import Path


def write_results(res: dict, out) -> Path:
    "Write `res` to `out` (JSON) through a temporary file and a rename; print the path."
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(res, indent=2) + '\n'); os.replace(tmp, out)
    print(f'wrote {out}')
    return out
