"""Entry point of llm-prefopt: its losses, the reward-model verifier, and its stages.

Everything heavy (torch) is imported inside the components, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl


@hookimpl
def register_losses(registry: Any) -> None:
    from llm_prefopt import kto, losses, ppo, reward_model

    for name, (config, summary) in losses.PAIR_LOSSES.items():
        registry.add(name, losses.pair_loss_factory(name), config=config, summary=summary)
    registry.add("kto", kto.make_kto, config=kto.KtoConfig,
                 summary="KTO: unpaired desirable / undesirable completions, batch KL reference point")
    registry.add("bradley_terry", reward_model.make_bradley_terry, config=reward_model.BradleyTerryConfig,
                 summary="reward model: -log sigmoid(r_chosen - r_rejected - margin), optional centering")
    registry.add("ppo", ppo.make_ppo_loss, config=ppo.PpoLossConfig,
                 summary="PPO: clipped policy loss + clipped value loss (value head)")


@hookimpl
def register_verifiers(registry: Any) -> None:
    from llm_prefopt import reward_model

    registry.add("reward_model", reward_model.RewardModelVerifier, config=reward_model.RewardModelScorerConfig,
                 summary="a trained reward model's scalar score of (prompt, completion)")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_prefopt.cai import CaiReviseConfig, ConstitutionCheckConfig
    from llm_prefopt.dpo_stage import DpoStageConfig
    from llm_prefopt.judge import AiLabelConfig
    from llm_prefopt.kto_stage import KtoStageConfig
    from llm_prefopt.pairs_stage import PreferencePairsConfig
    from llm_prefopt.ppo_stage import PpoStageConfig
    from llm_prefopt.reward_stage import RewardModelStageConfig

    def dpo(config: DpoStageConfig) -> Any:
        from llm_prefopt.dpo_stage import DpoStage

        return DpoStage(config)

    def kto_stage(config: KtoStageConfig) -> Any:
        from llm_prefopt.kto_stage import KtoStage

        return KtoStage(config)

    def reward_model_stage(config: RewardModelStageConfig) -> Any:
        from llm_prefopt.reward_stage import RewardModelStage

        return RewardModelStage(config)

    def preference_pairs(config: PreferencePairsConfig) -> Any:
        from llm_prefopt.pairs_stage import PreferencePairsStage

        return PreferencePairsStage(config)

    def ppo_stage(config: PpoStageConfig) -> Any:
        from llm_prefopt.ppo_stage import PpoStage

        return PpoStage(config)

    def ai_label(config: AiLabelConfig) -> Any:
        from llm_prefopt.judge import AiLabelStage

        return AiLabelStage(config)

    def cai_revise(config: CaiReviseConfig) -> Any:
        from llm_prefopt.cai import CaiReviseStage

        return CaiReviseStage(config)

    def constitution_check(config: ConstitutionCheckConfig) -> Any:
        from llm_prefopt.cai import ConstitutionCheckStage

        return ConstitutionCheckStage(config)

    registry.add("preference_pairs", preference_pairs, config=PreferencePairsConfig, optional_inputs=(
        "pairs", "checkpoint", "problems"),
        summary="preference pairs: cleaned from a file, or sampled on policy and scored by a verifier / reward model")
    registry.add("dpo", dpo, config=DpoStageConfig, inputs=("checkpoint", "pairs"),
                 optional_inputs=("heldout", "reference", "*"),
                 summary="DPO family on pairs: dpo, ipo, hinge, robust, simpo, orpo by name; cached reference")
    registry.add("kto", kto_stage, config=KtoStageConfig, inputs=("checkpoint", "examples"),
                 optional_inputs=("reference", "*"),
                 summary="KTO on unpaired desirable / undesirable completions (or pairs split in two)")
    registry.add("reward_model", reward_model_stage, config=RewardModelStageConfig, inputs=("checkpoint", "pairs"),
                 optional_inputs=("heldout", "*"),
                 summary="Bradley-Terry reward model (scalar head) with held-out pairwise accuracy")
    registry.add("ppo", ppo_stage, config=PpoStageConfig, inputs=("checkpoint", "problems"),
                 optional_inputs=("reward_model", "heldout", "*"),
                 summary="PPO (RLHF): value head, GAE, clipped losses, KL penalty, reward from an RM or verifier")
    registry.add("ai_label", ai_label, config=AiLabelConfig, inputs=("pairs",), optional_inputs=("judge",),
                 summary="RLAIF: a judge model labels pairs in both orders; agreement and accuracy statistics")
    registry.add("cai_revise", cai_revise, config=CaiReviseConfig, inputs=("checkpoint", "prompts", "constitution"),
                 summary="Constitutional AI SL phase: sample, critique by a principle, revise; SFT chats and pairs")
    registry.add("constitution_check", constitution_check, config=ConstitutionCheckConfig,
                 inputs=("prompts", "constitution"),
                 optional_inputs=("*",),
                 summary="programmatic checks of a constitution's principles on each checkpoint's answers")
