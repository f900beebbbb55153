"""Bradley-Terry reward models: the loss, and the trained model as a verifier any stage can use.

**The reward** of a (prompt, completion) is the engine's value head (``EngineRequest.value_head``,
``TrainEngine.values``) at the last token of the rendered conversation, the completion's
end-of-turn token: the pooling of TRL's ``AutoModelForSequenceClassification`` reward models
(the last non-padding token).

**The loss** (Bradley & Terry 1952; Ouyang et al. 2022, Eq. 1; TRL's ``RewardTrainer``) over a
batch of interleaved pair rows (chosen at 2i, rejected at 2i + 1, as ``llm_prefopt.losses``):
``-log sigmoid(r_c - r_r - margin)`` averaged over the pairs, ``margin`` a per-pair extra (Llama 2's
margin term, 0 without it), plus ``center_coef * mean((r_c + r_r)^2)`` (Eisenstein et al. 2023's
reward centering, TRL's ``center_rewards_coefficient``) when set. The batch carries ``last_index``
(per row: the position of its last token).

**As a verifier** (``reward_model``): ``verify(prompt, completion, reference)`` renders the prompt as
a user turn and the completion as the assistant's, and returns ``Verdict(score=r, passed=r >=
pass_threshold)``; ``reference`` is ignored. GRPO, rejection sampling, best-of-N and PPO take it
like any verifier (``verifier = {name = "reward_model", options = {checkpoint = "rm/checkpoint"}}``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from llm_core.chat import encode_conversation
from llm_core.config import Config
from llm_core.engines import TrainEngine
from llm_core.specs import EngineSpec
from llm_core.types import Message, Verdict


class BradleyTerryConfig(Config):
    center_coef: float | None = Field(None, ge=0, description="weight of mean((r_c + r_r)^2), reward centering; "
                                      "null: off")


def pair_rewards(values: Any, last_index: Any) -> tuple[Any, Any]:
    """(chosen, rejected) rewards of an interleaved batch: each row's value at its last token."""
    rows = values.shape[0]
    if rows % 2:
        raise ValueError(f"a reward-model batch interleaves chosen / rejected rows; got an odd {rows} rows")
    picked = values.gather(1, last_index.long().view(-1, 1)).squeeze(1).float()
    return picked[0::2], picked[1::2]


def bradley_terry(chosen: Any, rejected: Any, margin: Any = None, center_coef: float | None = None) -> Any:
    """Mean over pairs of ``-log sigmoid(r_c - r_r - margin)``, plus the centering term (see module)."""
    import torch.nn.functional as F

    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


class BradleyTerryLoss:
    def __init__(self, config: BradleyTerryConfig):
        self.config = config

    def __call__(self, values: Any, last_index: Any, margin: Any = None) -> tuple[Any, dict[str, Any]]:
        import torch

        if values is None:
            raise ValueError("the bradley_terry loss needs a value head: build the engine with value_head=True")
        chosen, rejected = pair_rewards(values, last_index)
        pair_margin = None if margin is None else margin[0::2].float()
        loss = bradley_terry(chosen, rejected, pair_margin, self.config.center_coef)
        with torch.no_grad():
            both = torch.cat([chosen, rejected])
            metrics = {"accuracy": (chosen > rejected).float().mean(), "margin": (chosen - rejected).mean(),
                       "mean_reward": both.mean(), "min_reward": both.min(), "max_reward": both.max()}
        return loss, metrics


def make_bradley_terry(config: BradleyTerryConfig) -> BradleyTerryLoss:
    return BradleyTerryLoss(config)


def conversation_ids(tokenizer: Any, prompt: Sequence[Message], completion: str, max_length: int) -> list[int]:
    """Token ids of prompt + assistant completion, keeping the last ``max_length`` (the scored end)."""
    ids, _ = encode_conversation(tokenizer, [*prompt, Message("assistant", completion)])
    return ids[-max_length:]


def score_rows(engine: TrainEngine, rows: Sequence[Sequence[int]], batch_rows: int = 16) -> list[float]:
    """The reward of each token row: the value head at its last token."""
    out: list[float] = []
    for start in range(0, len(rows), batch_rows):
        chunk = [list(r) for r in rows[start:start + batch_rows]]
        values = engine.values({"input_ids": chunk})
        out += [float(values[i, len(r) - 1]) for i, r in enumerate(chunk)]
    return out


class RewardModelScorerConfig(Config):
    checkpoint: str = Field(description="a reward model folder (a reward_model stage's <stage>/checkpoint)")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="the engine that runs it")
    system_prompt: str = Field("", description="system turn rendered before the prompt (as in training)")
    pass_threshold: float = Field(0.0, description="a completion 'passes' when its reward reaches this")
    max_length: int = Field(1024, ge=8, description="tokens scored (the end of longer conversations)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while scoring")


class RewardModelVerifier:
    """A trained reward model as a verifier: ``verify`` gives its score; ``verify_batch`` scores many at once."""

    def __init__(self, config: RewardModelScorerConfig):
        self.config = config
        self._engine: TrainEngine | None = None

    @property
    def engine(self) -> TrainEngine:
        if self._engine is None:
            from llm_core.engines import build_train_engine
            from llm_core.plugins import get_registries

            self._engine = build_train_engine(self.config.engine, get_registries(), checkpoint=self.config.checkpoint,
                                              value_head=True)
        return self._engine

    def _messages(self, prompt: str) -> list[Message]:
        head = [Message("system", self.config.system_prompt)] if self.config.system_prompt else []
        return [*head, Message("user", prompt)]

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        from llm_core.threads import limit_threads

        tok = self.engine.tokenizer
        rows = [conversation_ids(tok, self._messages(p), c, self.config.max_length)
                for p, c in zip(prompts, completions, strict=True)]
        with limit_threads(self.config.threads):
            return score_rows(self.engine, rows)

    def verify(self, prompt: str, completion: str, reference: Any = None) -> Verdict:
        return self.verify_batch([prompt], [completion])[0]

    def verify_batch(self, prompts: Sequence[str], completions: Sequence[str],
                     references: Sequence[Any] | None = None) -> list[Verdict]:
        start = time.perf_counter()
        scores = self.scores(prompts, completions)
        cost = (time.perf_counter() - start) / max(len(scores), 1)
        return [Verdict(s, s >= self.config.pass_threshold, f"reward {s:.3f}", cost) for s in scores]
