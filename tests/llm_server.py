"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests: real HTTP, scripted replies.

`reply(body) -> str | Status | Hang | Malformed` answers each request, where `body` is the
request's JSON (model, messages, parameters). Every request is kept in `requests`.

Run as a script it serves a fixed answer after a fixed latency, in its own process so that a
throughput test's client does not share the GIL with the server:

    python tests/llm_server.py --latency 0.1     # prints the base URL, then serves until killed
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Status:
    """Answer with this HTTP error status (429, 500, 503 ...)."""

    code: int


@dataclass
class Hang:
    """Sleep this long before answering (past the client's timeout)."""

    seconds: float


class Malformed:
    """Answer 200 with a body that is not a chat completion."""


def completion(model: str, content: str, number: int) -> dict:
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class LLMServer:
    def __init__(self, reply: Callable[[dict], object], *, keep_alive: bool = True):
        self.reply = reply
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as real providers; the throughput server closes each connection instead,
            # since 64 threads sharing pooled keep-alive sockets occasionally trip httpcore.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    number = len(server.requests)
                outcome = server.reply(body)
                if isinstance(outcome, Hang):
                    time.sleep(outcome.seconds)
                    outcome = "late"
                if isinstance(outcome, Status):
                    self._send(outcome.code, {"error": {"message": f"scripted {outcome.code}", "type": "server_error"}})
                elif isinstance(outcome, Malformed):
                    self._send(200, {"unexpected": "shape"})
                elif body.get("stream"):
                    self._stream(body.get("model", "test"), str(outcome), number)
                else:
                    self._send(200, completion(body.get("model", "test"), str(outcome), number))

            def _stream(self, model: str, content: str, number: int):
                """Server-sent events, as OpenAI streams: a few deltas, then [DONE]."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                pieces = [content[i : i + 16] for i in range(0, len(content), 16)] or [""]
                for index, piece in enumerate(pieces):
                    last = index == len(pieces) - 1
                    chunk = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": int(time.time()),
                             "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece},
                                                          "finish_reason": "stop" if last else None}]}  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _send(self, code: int, payload: dict):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, *args):  # keep test output quiet
                pass

        ThreadingHTTPServer.request_queue_size = 256  # 64 concurrent clients must not be reset
        ThreadingHTTPServer.daemon_threads = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fixed answer after a fixed latency.")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--answer", default="The answer is \\boxed{42}.")
    args = parser.parse_args()

    def reply(body: dict) -> str:
        time.sleep(args.latency)
        return args.answer

    with LLMServer(reply, keep_alive=False) as server:
        print(server.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
