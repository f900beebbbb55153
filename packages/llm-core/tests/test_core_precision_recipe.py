"""The contract's precision-recipe extension: EngineSpec names a recipe, build_train_engine builds
it from the registry and hands it to the engine in the request; validation checks it in place."""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config
from llm_core.engines import EngineRequest, PrecisionRecipe, build_train_engine
from llm_core.refs import resolve_refs
from llm_core.registry import Registries
from llm_core.specs import EngineSpec, ModelShape


class HalfConfig(Config):
    layers: str = Field("*", description="which layers")


class HalfRecipe:
    def __init__(self, config: HalfConfig):
        self.config = config

    def apply(self, model):
        model.append(f"converted {self.config.layers}")
        return [self.config.layers]


class RecordingBuilder:
    def train_engine(self, request: EngineRequest):
        model = []
        if request.precision_recipe is not None:
            request.precision_recipe.apply(model)
        return model


def registries() -> Registries:
    regs = Registries()
    regs.engines.add("fake", RecordingBuilder)
    regs.precision_recipes.add("half", HalfRecipe, config=HalfConfig)
    return regs


def test_engine_gets_the_built_recipe_and_applies_it():
    regs = registries()
    spec = EngineSpec(name="fake", precision_recipe={"name": "half", "options": {"layers": "mlp"}})
    model = build_train_engine(spec, regs, model=ModelShape(), tokenizer="tok")
    assert model == ["converted mlp"]
    assert isinstance(HalfRecipe(HalfConfig()), PrecisionRecipe)
    assert build_train_engine(EngineSpec(name="fake"), regs, model=ModelShape(), tokenizer="tok") == []


def test_validation_reaches_the_recipe_inside_the_engine_spec():
    regs = registries()
    bad = EngineSpec(name="fake", precision_recipe={"name": "half", "options": {"layer": "x"}})
    problems = resolve_refs(bad, regs, "stages.train.engine")
    assert len(problems) == 1 and problems[0].startswith("stages.train.engine.precision_recipe.options")
    unknown = EngineSpec(name="fake", precision_recipe="halve")
    assert "did you mean 'half'" in resolve_refs(unknown, regs, "engine")[0]


def test_missing_packages_of_a_recipe_inside_an_engine_spec_are_named():
    from llm_core.refs import missing_modules

    class NeedsConfig(HalfConfig):
        def required_modules(self):
            return {"no_such_module_xyz": "pip install xyz"}

    regs = registries()
    regs.precision_recipes.add("needy", HalfRecipe, config=NeedsConfig)
    spec = EngineSpec(name="fake", precision_recipe="needy")
    assert resolve_refs(spec, regs, "engine") == []
    assert missing_modules(spec, "engine") == ["engine.precision_recipe.options: needs the Python package "
                                               "'no_such_module_xyz', which is not installed; pip install xyz"]
