"""One way for every benchmark to print a figure next to its target.

Each call prints a line for people and a `#FIGURE {json}` line that `bench/run_all.py` (what
`make bench` runs) collects into its summary table.
"""

import json
import os


def figure(name: str, value: float, unit: str, target: str = "", ok: bool | None = None) -> None:
    """Print one measured figure. `target` is how the goal reads ("≥ 1000", "< 10 s");
    `ok` says whether this run met it (None: a figure with no target)."""
    verdict = "" if ok is None else ("  met" if ok else "  MISSED")
    goal = f"  (target {target})" if target else ""
    print(f"{name}: {value:,.4g} {unit}{goal}{verdict}", flush=True)
    record = {
        "name": name,
        "value": value,
        "unit": unit,
        "target": target,
        "ok": ok,
        "load1": round(os.getloadavg()[0], 2),
    }
    print("#FIGURE " + json.dumps(record, ensure_ascii=False), flush=True)
