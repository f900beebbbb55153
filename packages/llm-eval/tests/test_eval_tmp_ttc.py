import json, time
from pathlib import Path
def test_ttc(run_on_tiny):
    t=time.time()
    root = run_on_tiny([
        {"name": "ttc", "kind": "test_time_compute", "inputs": {"problems": "data/heldout", "cold_start": "cold_start/checkpoint"},
         "max_problems": 8, "samples": 16, "ns": [1, 2, 4, 8, 16], "selector": {"name": "process_reward", "options": {"scorer": "arithmetic_steps"}}, "threads": 1},
        {"name": "report", "kind": "eval_report", "inputs": {"ttc": "ttc", "cold_start": "cold_start", "pretrain": "pretrain"}}])
    print(time.time()-t)
    print(Path(root, "ttc/ttc.md").read_text())
    print(json.loads(Path(root, "cold_start/decontamination.json").read_text()))
    assert Path(root, "report/report.html").stat().st_size > 1000
