"""On a CUDA GPU: the ``DistributedTrainer`` path in bf16 (``tools/nanotron_gpu_check.py``: train a few
steps, save, resume, export, logits and top-k log-probs against transformers). Skipped without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SCRIPT = Path(__file__).parents[3] / "tools" / "nanotron_gpu_check.py"


def test_the_distributed_trainer_path_in_bf16():
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "6"], capture_output=True, text=True,
                          timeout=900, check=False)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["ok"], (report, done.stderr[-3000:])
