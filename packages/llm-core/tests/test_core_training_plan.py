"""``StepPlan.stop_early``: the loop skips a step's remaining optimizer steps once the test says so."""

from __future__ import annotations

from llm_core.training import StepPlan, Trainer


class CountingEngine:
    """Just enough of a TrainEngine for the loop: each train_step reports the batch it saw."""

    is_main = True
    step = 0

    def train_step(self, batch, loss_fn, micro_batch_size=None):
        self.step += 1
        return {"loss": 0.0, "approx_kl": float(batch["kl"])}


def test_stop_early_skips_the_rest_of_the_plan_and_logs_how_many_ran():
    engine = CountingEngine()
    plan = lambda step: StepPlan([{"kl": 0.1}, {"kl": 0.5}, {"kl": 0.9}], {"reward": 1.0},  # noqa: E731
                                 stop_early=lambda m: m["approx_kl"] > 0.3)
    history = Trainer(engine, plan, loss_fn=None, steps=2).run()
    assert engine.step == 4  # two of three batches per step
    assert [h["optimizer_steps"] for h in history] == [2, 2]
    assert history[0]["approx_kl"] == (0.1 + 0.5) / 2


def test_plans_without_stop_early_run_every_batch_and_log_as_before():
    engine = CountingEngine()
    history = Trainer(engine, lambda step: StepPlan([{"kl": 1.0}, {"kl": 2.0}]), loss_fn=None, steps=1).run()
    assert engine.step == 2 and "optimizer_steps" not in history[0]
