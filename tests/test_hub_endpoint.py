"""Repo ids resolve through huggingface_hub against HF_ENDPOINT: a hub served on 127.0.0.1 by the
test (resolve endpoint with the headers the client needs), revisions and tokens honoured, then
the cache serves offline."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from checkpoints import TINY_ENCODER, hf_checkpoint

COMMITS = {"main": "1" * 40, "v1": "2" * 40}
TOKEN = "hf_test_token"


class TinyHub(http.server.BaseHTTPRequestHandler):
    files: dict[str, dict[str, bytes]] = {}  # revision -> filename -> bytes
    seen_auth: list[str] = []

    def log_message(self, *args):
        pass

    def _resolve(self):
        # /{org}/{name}/resolve/{revision}/{filename}
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None, None, None
        return "/".join(parts[:2]), parts[3], "/".join(parts[4:])

    def _answer(self, with_body: bool):
        TinyHub.seen_auth.append(self.headers.get("authorization", ""))
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            return
        repo, revision, filename = self._resolve()
        data = self.files.get(revision, {}).get(filename) if repo == "org/tiny" else None
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if repo == "org/tiny" else "RepoNotFound")
            self.send_header("X-Repo-Commit", COMMITS.get(revision, ""))
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMITS[revision])
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(False)

    def do_GET(self):
        self._answer(True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    main = hf_checkpoint(tmp_path_factory.mktemp("main"), "BertConfig", "BertModel", seed=0, **TINY_ENCODER)
    v1 = hf_checkpoint(tmp_path_factory.mktemp("v1"), "BertConfig", "BertModel", seed=1, **TINY_ENCODER)
    TinyHub.files = {rev: {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}
                     for rev, folder in (("main", main), ("v1", v1))}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TinyHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", {"main": main, "v1": v1}
    server.shutdown()


def run_client(endpoint, cache, code, offline=False):
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120)


def test_revision_token_and_offline_cache(hub, tmp_path):
    endpoint, folders = hub
    code = f"""
        import torch, pretrained
        from safetensors.torch import load_file
        for rev in ("main", "v1"):
            model = pretrained.AutoModel.from_pretrained("org/tiny", revision=rev, token={TOKEN!r})
            want = load_file({folders!r}[rev] + "/model.safetensors")
            assert all(torch.equal(model.state_dict()[k], v) for k, v in want.items()), rev
        print("ok")
    """
    proc = run_client(endpoint, tmp_path, code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert f"Bearer {TOKEN}" in TinyHub.seen_auth
    # the second run needs no server: the cache answers in offline mode
    offline = run_client("http://127.0.0.1:9", tmp_path, code.replace('("main", "v1")', '("main",)'), offline=True)
    assert offline.returncode == 0, offline.stderr


def test_missing_repo_and_missing_token_are_clear(hub, tmp_path):
    endpoint, _ = hub
    code = """
        import pretrained
        try:
            pretrained.AutoModel.from_pretrained("org/tiny")
        except OSError as e:
            print("ERR", e)
    """
    proc = run_client(endpoint, tmp_path, code)
    assert "ERR" in proc.stdout and "org/tiny" in proc.stdout and "token" in proc.stdout, proc.stdout + proc.stderr
