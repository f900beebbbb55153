import json
import time
from pathlib import Path


def test_probes(run_on_tiny):
    t = time.time()
    root = run_on_tiny([{"name": "probes", "kind": "long_context_probes", "inputs": {"cold_start": "cold_start/checkpoint"},
                         "lengths": [2048], "samples": 1, "threads": 2}])
    print("probes took", time.time() - t)
    print(Path(root, "probes/table.md").read_text())
    print(json.loads(Path(root, "probes/manifest.json").read_text())["wall_time_s"])
