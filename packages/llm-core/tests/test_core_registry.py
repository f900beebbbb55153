from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from llm_core.config import Config
from llm_core.errors import DuplicateComponentError, UnknownComponentError
from llm_core.registry import KINDS, Registries, Registry, resolve_kind


class GreeterConfig(Config):
    greeting: str = Field("hello", description="what to say")
    times: int = Field(1, ge=1)


class Greeter:
    def __init__(self, config: GreeterConfig):
        self.text = " ".join([config.greeting] * config.times)


def test_add_build_and_attribution():
    registry = Registry("filters")
    with registry.attributed_to("my-plugin"):
        registry.add("greeter", Greeter, config=GreeterConfig, summary="says hello")
    entry = registry.get("greeter")
    assert entry.plugin == "my-plugin"
    assert entry.summary == "says hello"
    assert registry.build("greeter", {"times": 2}).text == "hello hello"
    assert entry.schema()["properties"]["greeting"]["description"] == "what to say"


def test_build_validates_options():
    registry = Registry("filters")
    registry.add("greeter", Greeter, config=GreeterConfig)
    with pytest.raises(ValidationError):
        registry.build("greeter", {"times": 0})
    with pytest.raises(ValidationError):
        registry.build("greeter", {"tims": 2})  # typo: extra keys are forbidden


def test_duplicate_is_an_error_unless_override():
    registry = Registry("filters")
    with registry.attributed_to("first"):
        registry.add("greeter", Greeter, config=GreeterConfig)
    with registry.attributed_to("second"), pytest.raises(DuplicateComponentError, match="first"):
        registry.add("greeter", Greeter, config=GreeterConfig)
    with registry.attributed_to("second"):
        registry.add("greeter", Greeter, config=GreeterConfig, override=True)
    assert registry.get("greeter").plugin == "second"


def test_unknown_name_suggests_close_matches():
    registry = Registry("filters")
    registry.add("gopher_quality", Greeter, config=GreeterConfig)
    with pytest.raises(UnknownComponentError, match="did you mean 'gopher_quality'"):
        registry.get("gopher_qualty")


def test_factory_receives_the_validated_frozen_config():
    registry = Registry("filters")
    seen = []
    registry.add("greeter", lambda config: seen.append(config) or Greeter(config), config=GreeterConfig)
    registry.build("greeter", {"times": 3})
    assert isinstance(seen[0], GreeterConfig) and seen[0].times == 3
    with pytest.raises(ValidationError):
        seen[0].times = 4  # frozen: nothing downstream can change what was validated
    config = GreeterConfig(times=2)
    registry.build("greeter", config)
    assert seen[1] is config  # an already-validated config is passed through, not copied


def test_component_without_options():
    registry = Registry("losses")
    registry.add("constant", lambda: 3)
    assert registry.build("constant") == 3
    with pytest.raises(TypeError, match="takes no options"):
        registry.build("constant", {"x": 1})


def test_registries_cover_every_kind_and_resolve_singulars():
    registries = Registries()
    assert [r.kind for r in registries.all()] == list(KINDS)
    assert resolve_kind("stage") == "stages"
    assert resolve_kind("loss") == "losses"
    assert resolve_kind("advantage_estimator") == "advantage_estimators"
    with pytest.raises(UnknownComponentError):
        resolve_kind("widget")
