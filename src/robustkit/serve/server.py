"""Running the app: load the models, check the security settings, start uvicorn (one or N processes)."""
from __future__ import annotations

import ipaddress
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

from .._validation import check_number

log = logging.getLogger(__name__)
CONFIG_ENV = "ROBUSTKIT_SERVE_CONFIG"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    targets: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys_file: Optional[str] = None
    no_auth: bool = False
    workers: int = 1
    which: str = "best"
    names: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)      # ServeOptions fields
    suspicion: dict = field(default_factory=dict)    # SuspicionConfig fields
    max_text_chars: int = 2000
    max_pixels: Optional[int] = None
    max_concurrency: int = 512
    keep_alive_s: float = 30.0
    access_log: bool = True

    def check(self) -> None:
        if not self.targets:
            raise ValueError("Give at least one run folder or checkpoint to serve.")
        check_number(self.port, "port", owner="serve", low=0, high=65535, integer=True)
        check_number(self.workers, "workers", owner="serve", low=1, high=64, integer=True)
        check_number(self.max_concurrency, "max_concurrency", owner="serve", low=1, integer=True)
        check_number(self.keep_alive_s, "keep_alive_s", owner="serve", low=0, low_inclusive=False)
        check_number(self.max_text_chars, "max_text_chars", owner="serve", low=1, integer=True)
        if self.names and len(self.names) != len(self.targets):
            raise ValueError(f"The '--name' option must be given once per model ({len(self.targets)}) or not at all. "
                             f"Got {len(self.names)} instead.")
        if self.no_auth and self.api_keys_file:
            raise ValueError("The '--no-auth' and '--api-keys-file' options exclude each other.")
        if self.no_auth and not is_loopback(self.host):
            raise ValueError(f"The '--no-auth' option is allowed only with a loopback host (127.0.0.1, ::1, "
                             f"localhost). Got --host {self.host!r} instead: create keys with `robustkit keys add`.")
        if not self.no_auth and not self.api_keys_file:
            raise ValueError("API keys are required: pass --api-keys-file KEYS (create one with `robustkit keys add "
                             "NAME --file KEYS`), or --no-auth on a loopback host.")
        if self.api_keys_file and not os.path.isfile(self.api_keys_file):
            raise FileNotFoundError(f"The keys file {self.api_keys_file!r} (--api-keys-file) does not exist. Create it "
                                    f"with `robustkit keys add NAME --file {self.api_keys_file}`.")


def build_app(cfg: ServerConfig):
    """Load the models and the keys and build the app (in each worker process)."""
    from .app import ServeOptions, create_app
    from .auth import KeyStore
    from .models import SuspicionConfig, load_served_model
    cfg.check()
    suspicion = SuspicionConfig(**cfg.suspicion)
    models = [load_served_model(t, name=(cfg.names[i] if cfg.names else None), which=cfg.which, suspicion=suspicion,
                                max_text_chars=cfg.max_text_chars, max_pixels=cfg.max_pixels)
              for i, t in enumerate(cfg.targets)]
    keys = None if cfg.no_auth else KeyStore(cfg.api_keys_file)
    return create_app(models, keys=keys, options=ServeOptions(**cfg.options))


def app_from_env():
    """uvicorn factory for --workers N: each worker process rebuilds the app from the environment."""
    return build_app(ServerConfig(**json.loads(os.environ[CONFIG_ENV])))


def run_server(cfg: ServerConfig) -> None:
    import uvicorn
    cfg.check()
    common = dict(host=cfg.host, port=cfg.port, access_log=False, server_header=False, log_config=None,
                  limit_concurrency=cfg.max_concurrency, timeout_keep_alive=cfg.keep_alive_s,
                  timeout_graceful_shutdown=10)
    if cfg.workers == 1:
        uvicorn.run(build_app(cfg), **common)
        return
    build_app(cfg)  # fail here, with a clear message, rather than in N workers
    os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
    uvicorn.run("robustkit.serve.server:app_from_env", factory=True, workers=cfg.workers, **common)
