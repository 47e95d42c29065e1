"""A real `pretrained serve` in a thread on a free 127.0.0.1 port (a plain module: tests import it by name)."""

from __future__ import annotations

import socket
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """uvicorn in a thread; `url` is the /v1 base URL, `state` the app's State (engine, metrics)."""

    def __init__(self, config):
        from pretrained.serving import build_server

        self.port = free_port()
        self.server = build_server(config, port=self.port, log_level="warning")
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/v1"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def state(self):
        return self.server.config.app.state.server

    def __enter__(self):
        import httpx

        self.thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.root + "/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not get ready: {self.state.error}")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kwargs):
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)
