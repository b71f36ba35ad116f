"""HTTP inference service: Open Inference Protocol (KServe v2) + /v1 endpoints, API keys, limits, metrics.

    from robustkit.serve import create_app, load_served_model
    app = create_app([load_served_model("runs/fmnist-fast")], keys=KeyStore("keys.json"))

``robustkit serve RUN...`` runs it under uvicorn; ``robustkit keys`` manages the keys file.
"""
from __future__ import annotations

from .app import ServeOptions, create_app
from .auth import KeyStore, add_key, list_keys, revoke_key
from .models import LoadedModel, SuspicionConfig, load_served_model
from .server import ServerConfig, build_app, run_server

__all__ = ["KeyStore", "LoadedModel", "ServeOptions", "ServerConfig", "SuspicionConfig", "add_key", "build_app",
           "create_app", "list_keys", "load_served_model", "revoke_key", "run_server"]
