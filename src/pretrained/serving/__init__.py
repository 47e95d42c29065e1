"""`pretrained serve`: an OpenAI-compatible HTTP server (app.py) over a continuous-batching engine
(scheduler.py), with Prometheus metrics (metrics.py). Needs the `serve` extra."""

from .app import ServerConfig, build_server, create_app

__all__ = ["ServerConfig", "build_server", "create_app"]
