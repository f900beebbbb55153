"""The compute planner: Chinchilla's rule, the fitted law's optimum, and the Llama 3 8B example."""

from __future__ import annotations

import pytest

from llm_eval.plan import cheapest_for_loss, fitted_loss, optimal_for_compute, optimal_tokens, plan_lines


def test_rule_of_twenty_tokens_per_parameter():
    n, d = optimal_for_compute(6 * 1e9 * 20e9)
    assert n == pytest.approx(1e9) and d == pytest.approx(20e9)
    assert optimal_tokens(8.03e9) == pytest.approx(160.6e9)


def test_fitted_law_optimum_is_the_lowest_loss_for_its_compute():
    compute = 1e22
    n, d = optimal_for_compute(compute, "hoffmann")
    assert 6 * n * d == pytest.approx(compute)
    for factor in (0.7, 1.4):
        assert fitted_loss(n * factor, d / factor) > fitted_loss(n, d)
    assert optimal_tokens(n, "hoffmann") == pytest.approx(d, rel=1e-6)


def test_cheapest_model_for_a_loss_shrinks_as_serving_grows():
    loss = fitted_loss(8.03e9, 15e12)
    small_volume, large_volume = cheapest_for_loss(loss, 1e9), cheapest_for_loss(loss, 1e14)
    assert large_volume.params < small_volume.params
    assert fitted_loss(large_volume.params, large_volume.tokens) == pytest.approx(loss, abs=1e-6)


def test_llama3_8b_worked_example():
    text = "\n".join(plan_lines(8.03e9, 15e12, None, 1e13, "rule"))
    assert "1868 per parameter" in text and "93.4x" in text and "7.23e+23 FLOPs" in text
    assert "| this plan | 8.03B | 15T |" in text


def test_plan_is_an_llmt_command():
    from typer.testing import CliRunner

    from llm_core.cli import _add_plugin_commands, app

    _add_plugin_commands()
    result = CliRunner().invoke(app, ["plan", "--compute", "1e21"])
    assert result.exit_code == 0, result.output
    assert "compute-optimal (rule)" in result.output
