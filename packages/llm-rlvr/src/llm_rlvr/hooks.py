"""Entry point of llm-rlvr: registers its advantage estimators, policy losses, verifiers, stages.

Everything heavy (torch, sympy, the sandbox) is imported inside the hook functions so that loading
the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl


@hookimpl
def register_advantage_estimators(registry: Any) -> None:
    from llm_rlvr import advantages as a

    registry.add("grpo", a.make_grpo, config=a.GrpoAdvantageConfig,
                 summary="group-normalized: (r - group mean) / group std")
    registry.add("dr_grpo", a.make_dr_grpo, summary="group mean baseline, no std division (Dr. GRPO)")
    registry.add("rloo", a.make_rloo, summary="leave-one-out baseline: r - mean of the other samples")
    registry.add("reinforce_pp", a.make_reinforce_pp, config=a.ReinforcePPConfig,
                 summary="REINFORCE++: batch-normalized (optionally group baseline first)")


@hookimpl
def register_losses(registry: Any) -> None:
    from llm_rlvr import policy_loss as p

    registry.add("grpo", p.make_clipped_loss, config=p.ClippedLossConfig,
                 summary="clipped-ratio policy loss + k3 KL, token / sequence / constant aggregation")
    registry.add("dr_grpo", p.make_dr_grpo_loss, config=p.DrGrpoLossConfig,
                 summary="clipped-ratio policy loss summed over tokens / a constant budget (no length bias)")


@hookimpl
def register_verifiers(registry: Any) -> None:
    from llm_rlvr.verifiers import code, combine, math, process

    registry.add("math", math.MathVerifier, config=math.MathConfig,
                 summary="final answer (\\boxed, <answer>, 'answer:', last number) equals the reference")
    registry.add("code", code.CodeVerifier, config=code.CodeConfig,
                 summary="program passes its unit tests inside the sandbox")
    registry.add("format", combine.FormatVerifier, config=combine.FormatConfig,
                 summary="completion matches a structure regex (default <think>...</think><answer>...</answer>)")
    registry.add("weighted", combine.WeightedVerifier, config=combine.WeightedConfig,
                 summary="weighted sum of registered verifiers")
    registry.add("length_penalty", combine.LengthPenaltyVerifier, config=combine.LengthPenaltyConfig,
                 summary="a verifier's score minus a soft overlong penalty")
    registry.add("process_reward", process.ProcessRewardVerifier, config=process.ProcessRewardConfig,
                 summary="per-step scores from a step scorer (PRM), aggregated")
    registry.add("arithmetic_steps", process.ArithmeticStepsVerifier,
                 summary="rule-based step scorer: every 'a op b = c' in a step is true")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_rlvr.arithmetic import ArithmeticProblemsConfig
    from llm_rlvr.eval_stage import RlvrEvalConfig
    from llm_rlvr.grpo_stage import GrpoConfig
    from llm_rlvr.rejection_stage import RejectionSamplingConfig

    def arithmetic_problems(config: ArithmeticProblemsConfig) -> Any:
        from llm_rlvr.arithmetic import ArithmeticProblemsStage

        return ArithmeticProblemsStage(config)

    def grpo(config: GrpoConfig) -> Any:
        from llm_rlvr.grpo_stage import GrpoStage

        return GrpoStage(config)

    def rejection_sampling(config: RejectionSamplingConfig) -> Any:
        from llm_rlvr.rejection_stage import RejectionSamplingStage

        return RejectionSamplingStage(config)

    def rlvr_eval(config: RlvrEvalConfig) -> Any:
        from llm_rlvr.eval_stage import RlvrEvalStage

        return RlvrEvalStage(config)

    registry.add("arithmetic_problems", arithmetic_problems, config=ArithmeticProblemsConfig,
                 summary="seeded multi-step arithmetic word problems: train / held-out, cold-start traces, text")
    registry.add("grpo", grpo, config=GrpoConfig, inputs=("checkpoint", "problems"), optional_inputs=("heldout", "*"),
                 summary="RL against a verifier: any advantage estimator and policy loss by name")
    registry.add("rejection_sampling", rejection_sampling, config=RejectionSamplingConfig,
                 inputs=("checkpoint", "problems"), optional_inputs=("*",),
                 summary="sample N per prompt, keep verified-correct distinct completions as SFT chats")
    registry.add("rlvr_eval", rlvr_eval, config=RlvrEvalConfig, inputs=("problems",), optional_inputs=("*",),
                 summary="held-out greedy pass@1 of named checkpoints, 95% intervals, reward / pass@1 plot")
