"""The Paintbridge inference server: websocket app, job queue, engines, image ops, model registry, CLI."""

__version__ = "0.1.0"
