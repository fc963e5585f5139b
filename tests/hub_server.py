"""A stand-in for the Hugging Face Hub on 127.0.0.1: serves folders as dataset repos through the
endpoints huggingface_hub's snapshot_download uses (repo info, recursive tree, resolve with HEAD
and byte ranges), and their files as a model repo's too (hf_hub_download's resolve). Point
HF_ENDPOINT at `server.url`.

Scripted faults: `gated` repos answer 401 GatedRepo without the right token; `revoked` tokens
get a plain 401; `drop_once` files close the connection half-way through their first download;
`stall` files send half and then wait (so a test can kill the client mid-file). Every request is
kept in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubServer:
    def __init__(self, repos: dict[str, Path], *, gated: dict[str, str] | None = None):
        self.repos = repos  # "org/name" -> folder
        self.gated = gated or {}  # "org/name" -> the token that may read it
        self.drop_once: set[str] = set()
        self.stall: set[str] = set()
        self.claimed_size: dict[str, int] = {}  # file -> the size the listing claims (a disk-full test)
        self.revoked: set[str] = set()  # tokens answered 401 Unauthorized on every request
        self.requests: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def _json(self, payload, code: int = 200, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, code: int, error_code: str, message: str):
                self._json({"error": message}, code, {"X-Error-Code": error_code, "X-Error-Message": message})

            def _route(self, head: bool):
                url = urlparse(self.path)
                path = unquote(url.path)
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "range": self.headers.get("Range"),
                        "auth": self.headers.get("Authorization"),
                    }
                )
                kind = "api" if path.startswith("/api/datasets/") else "file" if path.startswith("/datasets/") else None
                if kind is None and not path.startswith("/api/"):  # a model repo's file: /org/name/resolve/...
                    path, kind = "/datasets" + path, "file"
                if kind is None:
                    return self._error(404, "EntryNotFound", "no such route")
                if self.headers.get("Authorization", "").removeprefix("Bearer ") in hub.revoked:
                    return self._json({"error": "Invalid credentials in Authorization header"}, 401)
                rest = path.split("/datasets/", 1)[1].split("/")
                repo, tail = "/".join(rest[:2]), rest[2:]
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound", "Repository not found")
                token = hub.gated.get(repo)
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    return self._error(401, "GatedRepo", f"Access to dataset {repo} is restricted.")
                folder = hub.repos[repo]
                if kind == "api" and tail[:1] == ["revision"]:
                    return self._json(
                        {
                            "id": repo,
                            "sha": hub.commit(repo),
                            "private": False,
                            "siblings": [{"rfilename": f} for f in hub.files(repo)],
                        }
                    )
                if kind == "api" and tail[:1] == ["tree"]:
                    under = "/".join(tail[2:])
                    entries = [
                        {
                            "type": "file",
                            "path": f,
                            "oid": hub.oid(folder / f),
                            "size": hub.claimed_size.get(f, (folder / f).stat().st_size),
                        }
                        for f in hub.files(repo)
                        if not under or f.startswith(under + "/")
                    ]
                    return self._json(entries)
                if kind == "file" and tail[:1] == ["resolve"]:
                    return self._file(repo, folder, "/".join(tail[2:]), head)
                return self._error(404, "EntryNotFound", "no such route")

            def _file(self, repo: str, folder: Path, name: str, head: bool):
                file = folder / name
                if not file.is_file():
                    return self._error(404, "EntryNotFound", f"{name} not found")
                data = file.read_bytes()
                start = 0
                requested = self.headers.get("Range")
                if requested and requested.startswith("bytes="):
                    start = int(requested[len("bytes=") :].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("ETag", f'"{hub.oid(file)}"')
                self.send_header("X-Repo-Commit", hub.commit(repo))
                self.send_header("Accept-Ranges", "bytes")
                if name in hub.claimed_size:
                    self.send_header("X-Linked-Size", str(hub.claimed_size[name]))
                self.end_headers()
                if head:
                    return
                if name in hub.drop_once and not start:
                    hub.drop_once.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if name in hub.stall and not start:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    time.sleep(60)
                    return
                self.wfile.write(body)

        ThreadingHTTPServer.daemon_threads = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def files(self, repo: str) -> list[str]:
        folder = self.repos[repo]
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    @staticmethod
    def oid(path: Path) -> str:
        return hashlib.sha1(path.read_bytes()).hexdigest()

    def commit(self, repo: str) -> str:
        digest = hashlib.sha1()
        for name in self.files(repo):
            digest.update(name.encode() + self.oid(self.repos[repo] / name).encode())
        return digest.hexdigest()

    def downloads(self, name: str) -> list[dict]:
        """The GET requests for file `name`."""
        return [r for r in self.requests if r["method"] == "GET" and r["path"].endswith("/" + name)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
