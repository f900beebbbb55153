"""The MinHash LSH parameters, resolved once (by the signatures stage) and shared by later stages.

They name the output folders (``word5-p128-b14x9-s1``), so runs with different parameters never
read each other's files, and the later stages read them from the signatures stage's index rather
than repeating them in the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_dedup.minhash import optimal_bands, recall_target_bands


class MinHashOptions(Config):
    """Options of the ``minhash_signatures`` stage that fix the whole MinHash LSH run."""

    shingle: Literal["word", "char"] = Field("word", description="shingles of words (\\w+ runs) or of characters")
    ngram: int = Field(5, ge=1, le=16, description="shingle length in words (or characters)")
    lowercase: bool = Field(True, description="lowercase before shingling")
    numbers: Literal["keep", "zero"] = Field("keep", description="zero: every number (digits, optional decimal "
                                             "part) becomes 0 before shingling, as datatrove does")
    accents: Literal["keep", "strip"] = Field("keep", description="strip: drop combining marks after NFD "
                                              "(cafe = café), as datatrove does")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations the band search may use; "
                          "signatures hold the bands x rows it picks")
    hash_seed: int | None = Field(None, description="permutation seed; None uses the stage seed")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity that makes a duplicate")
    bands: int | None = Field(None, ge=1, description="LSH bands; with rows, overrides the search")
    rows: int | None = Field(None, ge=1, description="rows per band; with bands, overrides the search")
    # Verification removes the false positives that LSH lets through exactly, so by default the
    # search asks for recall only: a pair at the threshold becomes a candidate with probability
    # recall_target, at the fewest candidates below it (0.8, 0.99 and 128: 16 x 6).
    band_search: Literal["recall_target", "weighted_errors"] = Field(
        "recall_target", description="recall_target: fewest false candidates at recall_target; "
        "weighted_errors: datasketch's weighted FP / FN areas (for runs without verification)")
    recall_target: float = Field(0.99, gt=0, lt=1, description="candidate probability of a pair at the threshold")
    false_positive_weight: float = Field(0.05, ge=0, le=1, description="weighted_errors: weight of the FP area")
    false_negative_weight: float = Field(0.95, ge=0, le=1, description="weighted_errors: weight of the FN area")

    @model_validator(mode="after")
    def _bands_and_rows(self) -> MinHashOptions:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both 'bands' and 'rows', or neither (then they are searched for)")
        if self.bands is not None and self.bands * (self.rows or 0) > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * (self.rows or 0)} exceeds num_perm = "
                             f"{self.num_perm}; lower them or raise num_perm")
        return self


@dataclass(frozen=True)
class MinHashParams:
    shingle: str
    ngram: int
    lowercase: bool
    numbers: str
    accents: str
    num_perm: int
    seed: int
    threshold: float
    bands: int
    rows: int

    @property
    def tag(self) -> str:
        norm = ("" if self.lowercase else "-cased") + ("-num0" if self.numbers == "zero" else "") \
            + ("-noaccent" if self.accents == "strip" else "")
        return f"{self.shingle}{self.ngram}{norm}-p{self.num_perm}-b{self.bands}x{self.rows}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MinHashParams:
        return cls(**{"numbers": "keep", "accents": "keep", **data})  # indexes written before these options

    @classmethod
    def resolve(cls, options: MinHashOptions, stage_seed: int) -> MinHashParams:
        if options.bands is not None and options.rows is not None:
            bands, rows = options.bands, options.rows
        elif options.band_search == "recall_target":
            bands, rows = recall_target_bands(options.threshold, options.num_perm, options.recall_target)
        else:
            bands, rows = optimal_bands(options.threshold, options.num_perm, options.false_positive_weight,
                                        options.false_negative_weight)
        seed = options.hash_seed if options.hash_seed is not None else stage_seed
        return cls(options.shingle, options.ngram, options.lowercase, options.numbers, options.accents,
                   options.num_perm, seed, options.threshold, bands, rows)
