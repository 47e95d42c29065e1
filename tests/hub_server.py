"""A hub on 127.0.0.1 for tests: the endpoints huggingface_hub's client calls to create repos, upload
(preupload + ndjson commit, every file in "regular" mode), list trees and download (resolve with the
headers the client checks). Repos live in memory; every request needs the token when one is set."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from urllib.parse import unquote, urlsplit


class LocalHub:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> branch -> path -> bytes
        self.commits: list[tuple[str, str, str]] = []  # (repo, branch, summary)
        self.private: dict[str, bool | None] = {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                hub._handle(self, "POST")

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos.get(repo, {}).get(branch, {})

    def _sha(self, repo: str, branch: str) -> str:
        count = sum(1 for r, b, _ in self.commits if r == repo and b == branch)
        return hashlib.sha1(f"{repo}@{branch}#{count}".encode()).hexdigest()

    # --- requests ---

    def _handle(self, request, method: str) -> None:
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return _reply(request, 401, {"error": "Invalid credentials"}, error_code="RepoNotFound")
        body = request.rfile.read(int(request.headers.get("content-length") or 0)) if method == "POST" else b""
        path = unquote(urlsplit(request.path).path)
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/api/repos/create":
            spec = json.loads(body)
            repo = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else f"user/{spec['name']}"
            self.repos.setdefault(repo, {"main": {}})
            visibility = spec.get("visibility")  # huggingface_hub 1.x+; older clients send "private"
            self.private[repo] = spec.get("private") if visibility is None else visibility == "private"
            return _reply(request, 200, {"url": f"{self.url}/{repo}", "name": repo})
        if method == "POST" and path == "/api/validate-yaml":  # the client checks a README's metadata first
            import yaml

            try:
                yaml.safe_load(json.loads(body)["content"].split("---")[1])
            except (yaml.YAMLError, IndexError) as e:
                return _reply(request, 400, {"error": f"invalid YAML metadata: {e}"})
            return _reply(request, 200, {})
        if parts[:2] == ["api", "models"] and len(parts) >= 5:
            repo, action, rest = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            if repo not in self.repos:
                return _reply(request, 404, {"error": "Repository not found"}, error_code="RepoNotFound")
            if method == "POST" and action == "branch":
                self.repos[repo].setdefault(rest, dict(self.repos[repo]["main"]))
                return _reply(request, 200, {})
            if method == "POST" and action == "preupload":
                files = json.loads(body)["files"]
                return _reply(request, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
            if method == "POST" and action == "commit":
                return self._commit(request, repo, rest, body)
            if method == "GET" and action == "tree":
                branch, _, folder = rest.partition("/")
                files = self.files(repo, branch)
                listed = [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                          for p, d in sorted(files.items()) if not folder or p.startswith(folder.rstrip("/") + "/")]
                return _reply(request, 200, listed)
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            repo, branch, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            data = self.files(repo, branch).get(filename)
            if data is None:
                return _reply(request, 404, {"error": "not found"},
                              error_code="EntryNotFound" if repo in self.repos else "RepoNotFound")
            request.send_response(200)
            request.send_header("X-Repo-Commit", self._sha(repo, branch))
            request.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            if method == "GET":
                request.wfile.write(data)
            return None
        return _reply(request, 404, {"error": f"no route for {method} {path}"})

    def _commit(self, request, repo: str, branch: str, body: bytes) -> None:
        files = self.repos[repo].setdefault(branch, {})
        summary = ""
        for line in body.decode().splitlines():
            op = json.loads(line)
            key, value = op["key"], op["value"]
            if key == "header":
                summary = value["summary"]
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                    del files[p]
            else:
                return _reply(request, 400, {"error": f"unsupported commit operation {key!r}"})
        self.commits.append((repo, branch, summary))
        sha = self._sha(repo, branch)
        return _reply(request, 200, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha})


def _reply(request, status: int, payload, error_code: str | None = None) -> None:
    data = json.dumps(payload).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    if error_code:
        request.send_header("X-Error-Code", error_code)
    request.end_headers()
    request.wfile.write(data)
