"""Vision models by name; Normalize lives inside the model."""
from .normalize import Normalize
from .registry import available_models, create_model, model_for_dataset, model_kwargs, register_model

__all__ = ["Normalize", "available_models", "create_model", "model_for_dataset", "model_kwargs", "register_model"]

from . import text as _text  # noqa: E402,F401 - registers the "text" checkpoint family (transformers is imported lazily)
from . import foreign as _foreign  # noqa: E402,F401 - registers the "foreign" checkpoint family (user's own models)
