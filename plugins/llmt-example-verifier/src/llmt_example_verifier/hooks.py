"""Entry point of the plugin: registers the verifier under the name ``json_keys``."""

from pydantic import BaseModel, ConfigDict, Field

from llm_core import hookimpl


class JsonKeysConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    required_keys: list[str] = Field(default_factory=list, description="keys the object must hold")
    match_reference_values: bool = Field(True, description="compare values with a dict reference")


@hookimpl
def register_verifiers(registry):
    from llmt_example_verifier.verifier import JsonKeysVerifier

    registry.add("json_keys", JsonKeysVerifier, config=JsonKeysConfig,
                 summary="completion holds a JSON object with the required keys (and reference values)")
