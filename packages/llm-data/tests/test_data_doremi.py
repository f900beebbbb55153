"""DoReMi: the Group-DRO update against the paper's formulas, and the stage on a toy mixture."""

from __future__ import annotations

import gzip
import json
import random
import string

import numpy as np
import pytest

from llm_core.config import validate_recipe
from llm_core.plugins import get_host
from llm_core.runner import PipelineRunner
from llm_data.doremi import domain_excess_loss, doremi_update


def test_excess_loss_is_clipped_and_averaged_per_domain_token():
    proxy = np.array([[3.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    reference = np.array([[1.0, 2.0], [1.0, 1.0], [5.0, 6.0]])
    # row 0 (domain 0): max(2, 0) + max(-1, 0) = 2; row 1 (domain 0): 2; row 2 (domain 1): 0
    lam = domain_excess_loss(proxy, reference, np.array([0, 0, 1]), n_domains=3)
    assert lam.tolist() == [4.0 / 4, 0.0, 0.0]


def test_update_matches_algorithm_1():
    alpha = np.array([0.5, 0.3, 0.2])
    lam = np.array([0.1, 2.0, 0.0])
    eta, c = 0.7, 0.01
    naive = alpha * np.exp(eta * lam)
    naive = (1 - c) * naive / naive.sum() + c / 3
    assert np.allclose(doremi_update(alpha, lam, eta, c), naive)
    # no excess anywhere: only the smoothing towards uniform
    assert np.allclose(doremi_update(alpha, np.zeros(3), eta, 0.0), alpha)
    # huge excess stays finite and puts almost everything on that domain
    assert doremi_update(alpha, np.array([0.0, 1e4, 0.0]), 1.0, 1e-3)[1] > 0.99
    with pytest.raises(ValueError, match="distribution"):
        doremi_update(np.array([0.5, 0.6]), np.zeros(2))


def _toy_corpus(folder):
    """'learnable': sentences of a small grammar; 'noise': uniformly random letters and spaces."""
    rng = random.Random(0)
    folder.mkdir()
    subjects = ["the cat", "a dog", "my friend", "the old man", "her sister", "a small bird"]
    verbs = ["sees", "likes", "finds", "wants", "brings", "hears"]
    objects = ["the ball", "a tree", "the red house", "some water", "a long song", "the garden"]
    with gzip.open(folder / "part-0.jsonl.gz", "wt") as f:
        for i in range(40):
            text = " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(30))
            f.write(json.dumps({"id": f"l{i}", "text": text, "domain": "learnable"}) + "\n")
            noise = "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(700))
            f.write(json.dumps({"id": f"n{i}", "text": noise, "domain": "noise"}) + "\n")


def test_doremi_moves_weight_to_the_learnable_domain(tmp_path):
    pytest.importorskip("torch")
    _toy_corpus(tmp_path / "docs")
    data = {"name": "d", "seed": 0, "executor": {"kind": "local", "workers": 1}, "stages": [{
        "name": "doremi", "kind": "doremi", "inputs": {"documents": str(tmp_path / "docs")},
        "domain_key": "domain", "reference_steps": 150, "proxy_steps": 60, "seq_len": 32, "batch_size": 8,
        "min_bytes_per_domain": 4096}]}
    host = get_host()
    PipelineRunner(validate_recipe(data, host.registries, host), str(tmp_path / "run"), host).run()
    result = json.loads((tmp_path / "run" / "doremi" / "weights.json").read_text())
    # from uniform (0.5 each) towards the domain where the proxy lags the reference; about 0.7 here
    assert result["weights"]["learnable"] > 0.6 and result["weights"]["noise"] < 0.4
    assert sum(result["weights"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["mean_excess"]["learnable"] > result["mean_excess"]["noise"]


def test_doremi_needs_two_domains_with_enough_text(tmp_path):
    pytest.importorskip("torch")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"text": "x" * 5000, "domain": "big"}) + "\n"
                                    + json.dumps({"text": "tiny", "domain": "small"}) + "\n")
    data = {"name": "d", "executor": {"kind": "local", "workers": 1}, "stages": [{
        "name": "doremi", "kind": "doremi", "inputs": {"documents": str(folder)}, "domain_key": "domain",
        "min_bytes_per_domain": 1024}]}
    host = get_host()
    with pytest.raises(ValueError, match="2 domains"):
        PipelineRunner(validate_recipe(data, host.registries, host), str(tmp_path / "run"), host).run()
