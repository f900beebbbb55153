"""What ``llmt status`` shows of a run folder: each stage's state (dead runs detected), wall time,
error, and headline metrics in the order the stage reported them, rounded."""

from __future__ import annotations

import math
import os
import socket
from typing import Any

SHOWN_METRICS = 6  # per stage, in the status table
SHOWN_ENTRIES = 4  # of a metric that is a table (weights per domain, drops per reason)


def round_value(value: Any, digits: int = 4) -> Any:
    """Floats to ``digits`` significant digits; tables and lists element-wise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return value
        return round(value, max(0, digits - 1 - int(math.floor(math.log10(abs(value))))))
    if isinstance(value, dict):
        return {k: round_value(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_value(v, digits) for v in value]
    return value


def _compact(value: Any) -> str:
    value = round_value(value)
    if isinstance(value, dict):
        items = list(value.items())
        shown = ", ".join(f"{k}: {_compact(v)}" for k, v in items[:SHOWN_ENTRIES])
        return "{" + shown + (", ..." if len(items) > SHOWN_ENTRIES else "") + "}"
    return str(value)


def headline_text(kind: str, metrics: dict[str, Any] | None, limit: int = SHOWN_METRICS) -> str:
    """``final_loss=0.4215, first_loss=6.24, steps=1100``: the first metrics the stage reported."""
    items = list((metrics or {}).items())[:limit]
    return ", ".join(f"{k}={_compact(v)}" for k, v in items)


def stage_state(manifest: dict[str, Any]) -> str:
    """``completed`` / ``failed`` / ``interrupted``, or for ``running``: whether its process lives.

    A stage killed with SIGKILL never writes its end: its manifest says running, with the pid
    and host that ran it. On that host, a pid that no longer exists means the run is dead."""
    status = manifest.get("status", "?")
    if status != "running":
        return status
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host is None:
        return "running?"
    if host != socket.gethostname():
        return f"running (on {host})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead (killed; run again to resume)"
    except PermissionError:
        pass
    return "running"


def status_rows(store: Any) -> list[list[str]]:
    rows = []
    for stage in store.stages_on_disk():
        m = store.read_manifest(stage) or {}
        state = stage_state(m)
        detail = headline_text(m.get("kind", ""), m.get("metrics"))
        if m.get("error"):
            detail = f"{m['error'][:160]}" + (f"  (traceback: {stage}/error.txt)" if state == "failed" else "")
        wall = m.get("wall_time_s")
        rows.append([stage, m.get("kind", "?"), state, f"{wall:.1f}" if isinstance(wall, (int, float)) else "",
                     m.get("finished_at", ""), detail])
    return rows
