"""Entry point of the plugin: registers the loss under the name ``z_loss``."""

from pydantic import BaseModel, ConfigDict, Field

from llm_core import hookimpl


class ZLossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    z_coef: float = Field(1e-4, ge=0, description="weight of the log(Z)^2 term")


@hookimpl
def register_losses(registry):
    from llmt_example_loss.loss import make_z_loss

    registry.add("z_loss", make_z_loss, config=ZLossConfig,
                 summary="cross-entropy + z_coef * log(Z)^2 (PaLM)")
