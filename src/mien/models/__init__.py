"""Pure ``torch.nn.Module`` models by family (no Lightning, no config frameworks), registered by name with
their input contract (:mod:`mien.models.registry`)."""

from mien.models.registry import (
    InputContract,
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = ["InputContract", "ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]
