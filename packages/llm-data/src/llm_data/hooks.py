"""llm-data's plugin surface: readers, writers, filters, transforms and stages (imports stay lazy)."""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl


@hookimpl
def register_readers(registry: Any) -> None:
    from llm_data.io import readers as r

    registry.add("parquet", r.ParquetReader, config=r.ParquetReaderConfig, summary="Parquet, streamed by batch")
    registry.add("text", r.TextReader, config=r.TextReaderConfig,
                 summary="plain text file: one document per file, paragraph or line")
    registry.add("hf_dataset", r.HfDatasetReader, config=r.HfDatasetReaderConfig,
                 summary="Hugging Face dataset saved to disk (folder or .arrow file)")
    registry.add("mediawiki", r.MediaWikiReader, config=r.MediaWikiReaderConfig,
                 summary="MediaWiki XML dump (.xml / .xml.bz2): raw wikitext pages")


@hookimpl
def register_writers(registry: Any) -> None:
    from llm_data.io import writers as w

    registry.add("parquet", w.ParquetWriter, config=w.ParquetWriterConfig, summary="Parquet, atomic")
    registry.add("tokens", w.TokensWriter, config=w.TokensWriterConfig,
                 summary="llmt-tokens-v1 folder (meta.json + raw token file) for the engines")


@hookimpl
def register_filters(registry: Any) -> None:
    from llm_data.filters import (
        c4,
        fineweb,
        gopher,
        language_id,
        quality_classifier,
        toxicity,
        url_filter,
    )

    registry.add("url_filter", url_filter.UrlFilter, config=url_filter.UrlFilterConfig,
                 summary="domain / URL blocklists and banned URL subwords")
    registry.add("language_id", language_id.LanguageIdFilter, config=language_id.LanguageIdConfig,
                 summary="fastText lid.176: keep chosen languages above a score")
    registry.add("gopher_quality", gopher.GopherQualityFilter, config=gopher.GopherQualityConfig,
                 summary="Gopher word statistics rules")
    registry.add("gopher_repetition", gopher.GopherRepetitionFilter, config=gopher.GopherRepetitionConfig,
                 summary="Gopher duplicate line / paragraph / n-gram rules")
    registry.add("c4_quality", c4.C4QualityFilter, config=c4.C4QualityConfig,
                 summary="C4 line rules (removes lines; drops on lorem ipsum, braces, few sentences)")
    registry.add("fineweb_quality", fineweb.FineWebQualityFilter, config=fineweb.FineWebQualityConfig,
                 summary="FineWeb line punctuation / short line / duplicate / list rules")
    registry.add("toxicity", toxicity.ToxicityFilter, config=toxicity.ToxicityConfig,
                 summary="toxic word list, optionally alt-profanity-check")
    registry.add("quality_classifier", quality_classifier.QualityClassifierFilter,
                 config=quality_classifier.QualityClassifierConfig,
                 summary="FineWeb-Edu style head on MiniLM embeddings: keep scores >= threshold")


@hookimpl
def register_transforms(registry: Any) -> None:
    from llm_data.filters import pii

    registry.add("pii", pii.PiiRedactor, config=pii.PiiConfig,
                 summary="redact e-mails, phones, IPs, cards (Luhn), IBANs with typed placeholders")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_data.stages import corpus, doremi, mix, quality, tokenize

    registry.add("noisy_wikipedia", corpus.NoisyWikipediaStage, config=corpus.NoisyWikipediaConfig,
                 summary="Wikipedia + news sample (gensim) with seeded injected noise")
    registry.add("tokenize", tokenize.TokenizeStage, config=tokenize.TokenizeConfig, inputs=("documents",),
                 summary="documents -> llmt-tokens-v1 shards")
    registry.add("train_quality_classifier", quality.TrainQualityClassifierStage,
                 config=quality.TrainQualityClassifierConfig, inputs=("documents",), optional_inputs=("reference",),
                 summary="label a sample (reference vs random, or a judge), fit a head, report held-out F1")
    registry.add("doremi", doremi.DoReMiStage, config=doremi.DoReMiConfig, inputs=("documents",),
                 summary="DoReMi domain weights: tiny reference + Group-DRO proxy model (needs torch)")
    registry.add("mix", mix.MixStage, config=mix.MixConfig, inputs=("documents",), optional_inputs=("weights",),
                 summary="sample domains to a mixture / curriculum (static, temperature, DoReMi; anneal, replay)")
    registry.add("quality_filter", quality.QualityFilterStage, config=quality.QualityFilterConfig,
                 inputs=("documents", "classifier"),
                 summary="filter stage with the trained quality_classifier step")
