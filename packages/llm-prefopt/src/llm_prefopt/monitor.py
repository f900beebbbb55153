"""The mode-collapse monitor: warns when the chosen and the rejected log-probs both keep falling.

DPO-style losses only ask the chosen completion to beat the rejected one; a known failure
(Pal et al. 2024, "Smaug"; Razin et al. 2024) is that both likelihoods fall together, mass moving
to completions in neither set. The monitor watches the implicit rewards the losses log
(``rewards/chosen`` and ``rewards/rejected``: beta times the log-ratio to the reference, or the
scaled mean log-prob for reference-free losses, so batches of different pairs stay comparable)
and, when both fell at every one of ``patience`` consecutive steps, logs a warning with the
remedies (a higher beta, IPO, an SFT mix) and records ``mode_collapse = 1`` in the step's metrics
(0 otherwise). Its state is saved with the run, so a resumed run warns exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.engines import TrainEngine

log = logging.getLogger("llmt.prefopt")
REMEDIES = ("raise beta (stay closer to the reference)", "switch to loss = \"ipo\" (a bounded target margin)",
            "add an SFT mix (loss options sft_weight = 0.1 ... 1, RPO)")


class CollapseMonitorConfig(Config):
    patience: int = Field(5, ge=1, description="consecutive steps of both rewards falling before warning")
    chosen_key: str = "rewards/chosen"
    rejected_key: str = "rewards/rejected"


class CollapseMonitor:
    name = "mode_collapse"

    def __init__(self, config: CollapseMonitorConfig):
        self.config = config
        self.previous: tuple[float, float] | None = None
        self.falling = 0
        self.warned = False

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        c = self.config
        if c.chosen_key not in metrics or c.rejected_key not in metrics:
            return
        current = (float(metrics[c.chosen_key]), float(metrics[c.rejected_key]))
        if self.previous is not None and current[0] < self.previous[0] and current[1] < self.previous[1]:
            self.falling += 1
        else:
            self.falling = 0
        self.previous = current
        collapsing = self.falling >= c.patience
        metrics["mode_collapse"] = float(collapsing)
        if collapsing and not self.warned:
            self.warned = True
            log.warning("step %d: chosen and rejected log-probs have both fallen for %d steps (chosen %.3f, "
                        "rejected %.3f): a sign of mode collapse. Remedies: %s", step + 1, self.falling,
                        current[0], current[1], "; ".join(REMEDIES))

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous, "falling": self.falling, "warned": self.warned}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = tuple(state["previous"]) if state.get("previous") is not None else None
        self.falling = int(state.get("falling", 0))
        self.warned = bool(state.get("warned", False))
