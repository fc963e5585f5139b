"""A stand-in for vLLM's OpenAI-compatible server, for GRPO's vLLM sampling on a CPU host
(vLLM's wheels are CUDA builds, and pull a torch of their own).

It answers what recipes/rl.py asks of vLLM, in vLLM's wire format, with a real model:
transformers and peft in the train env sample the answers, and the LoRA adapters it is sent
are loaded and sampled from.

- `vllm serve MODEL` flags: the ones rl.py passes; any other one is refused, as argparse does;
- `GET /health`, `GET /v1/models` (`data[0].id`: the served name, `root`: the model);
- `POST /v1/completions` with `prompt` as token ids, `n`, `max_tokens`, `temperature`, `top_p`,
  `logprobs`, `return_tokens_as_token_ids`: choices indexed prompt by prompt, `logprobs.tokens`
  as "token_id:N" with each sampled token's log-probability; the token the answer stopped at is
  kept (finish_reason "stop"; stop_reason None for the tokenizer's EOS, the id for another EOS id
  of the generation config), as vLLM 0.33's output token ids keep it;
- `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter` (`lora_name`, `lora_path`), there
  only when VLLM_ALLOW_RUNTIME_LORA_UPDATING is true; an adapter of rank above
  --max-lora-rank, or a name already loaded, is refused with 400, an unknown name with 404.

STANDIN_DIE_AFTER_REQUESTS=N makes it exit at the POST after the Nth, unanswered.
Each request is printed as one JSON line (what the tests read back from rl.py's vllm.log); an
adapter load carries the SHA-256 of its tensors, for comparison with the trainer's checkpoints.

    python tests/vllm_standin.py serve MODEL --port 8000 --enable-lora ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def tensors_sha256(path: Path) -> str:
    """The adapter's tensors by name and value: the same for the same weights, whatever the file."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(name.encode())
        digest.update(tensor.float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name")
    serve.add_argument("--enable-lora", action="store_true")
    serve.add_argument("--max-lora-rank", type=int, choices=[1, 8, 16, 32, 64, 128, 256, 320, 512], default=16)
    serve.add_argument("--max-loras", type=int, default=1)
    serve.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    serve.add_argument("--max-model-len", type=int)
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--generation-config", default="auto")
    return parser.parse_args(argv)


class Model:
    """The served model and its loaded adapters; one request at a time (vLLM batches them)."""

    def __init__(self, args: argparse.Namespace):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(args.seed)
        self.args, self.lock = args, threading.Lock()
        self.name = args.served_model_name or args.model
        self.base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        self.model = self.base  # a PeftModel once an adapter is loaded
        self.adapters: dict[str, str] = {}
        # As vLLM: the tokenizer's EOS ends an answer (stop_reason None); the generation config's
        # other EOS ids too, as stop tokens (stop_reason: the id). Either is kept in the answer.
        self.eos = AutoTokenizer.from_pretrained(args.model).eos_token_id
        extra = self.base.generation_config.eos_token_id
        self.stops = {self.eos, *(extra if isinstance(extra, list) else [extra] if extra is not None else [])}

    def load(self, name: str, path: str) -> tuple[int, str]:
        from peft import PeftConfig, PeftModel

        config = PeftConfig.from_pretrained(path)
        if config.r > self.args.max_lora_rank:
            return 400, f"LoRA rank {config.r} is greater than max_lora_rank {self.args.max_lora_rank}."
        if name in self.adapters:
            return 400, f"The lora adapter '{name}' has already been loaded."
        with self.lock:
            if self.model is self.base:
                self.model = PeftModel.from_pretrained(self.base, path, adapter_name=name).eval()
            else:
                self.model.load_adapter(path, adapter_name=name)
        self.adapters[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, name: str) -> tuple[int, str]:
        if name not in self.adapters:
            return 404, f"The lora adapter '{name}' cannot be found."
        with self.lock:
            self.model.delete_adapter(name)
        del self.adapters[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def complete(self, body: dict) -> tuple[int, dict]:
        import torch

        name = body.get("model")
        if name != self.name and name not in self.adapters:
            return 404, {"error": {"message": f"The model `{name}` does not exist.", "code": 404}}
        prompts = body["prompt"]
        if prompts and isinstance(prompts[0], int):
            prompts = [prompts]
        plain = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
        if any(key in body and body[key] != value for key, value in plain.items()):
            message = f"this stand-in samples plainly ({plain}), asked {body}"  # what rl.py asks; else untested
            return 400, {"error": {"message": message, "code": 400}}
        n, limit = int(body.get("n", 1)), int(body.get("max_tokens", 16))
        temperature = float(body.get("temperature", 1.0))
        choices = []
        with self.lock, torch.no_grad():
            for at, ids in enumerate(prompts):
                if self.args.max_model_len and len(ids) + limit > self.args.max_model_len:
                    message = f"This model's maximum context length is {self.args.max_model_len} tokens."
                    return 400, {"error": {"message": message, "code": 400}}
                kwargs = {"input_ids": torch.tensor([ids]), "num_return_sequences": n, "max_new_tokens": limit,
                          "do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0,
                          "eos_token_id": sorted(self.stops), "pad_token_id": self.eos,
                          "return_dict_in_generate": True, "output_logits": True}  # fmt: skip
                if name == self.name and self.model is not self.base:  # the start weights, adapters aside
                    with self.model.disable_adapter():
                        out = self.model.generate(**kwargs)
                elif name != self.name:
                    self.model.set_adapter(name)
                    out = self.model.generate(**kwargs)
                else:
                    out = self.base.generate(**kwargs)
                choices += self.choices(out, len(ids), at * n, temperature)
        return 200, {"id": "cmpl-standin", "object": "text_completion", "model": name, "choices": choices}

    def choices(self, out, prompt_length: int, first_index: int, temperature: float) -> list[dict]:
        import torch

        logprobs = torch.stack(out.logits, dim=1).float().div(temperature).log_softmax(-1)  # [n, steps, vocab]
        choices = []
        for row, sequence in enumerate(out.sequences):
            ids = sequence[prompt_length:].tolist()
            end = next((at for at, token in enumerate(ids) if token in self.stops), None)
            ids = ids if end is None else ids[: end + 1]  # the stop token kept, the padding after it not
            values = [logprobs[row, step, token].item() for step, token in enumerate(ids)]
            choices.append(
                {
                    "index": first_index + row,
                    "text": "",
                    "logprobs": {"tokens": [f"token_id:{t}" for t in ids], "token_logprobs": values},
                    "finish_reason": "length" if end is None else "stop",
                    "stop_reason": None if end is None or ids[-1] == self.eos else ids[-1],
                }
            )
        return choices


def serve(args: argparse.Namespace) -> None:
    model = Model(args)
    runtime_lora = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in ("1", "true")
    print(json.dumps({"event": "start", "argv": sys.argv[1:],
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "runtime_lora": runtime_lora}), flush=True)  # fmt: skip

    posts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):  # one JSON line per request instead
            pass

        def answer(self, code: int, payload) -> None:
            body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                return self.answer(200, "")
            if self.path == "/v1/models":
                return self.answer(200, {"object": "list", "data": [{"id": model.name, "root": args.model}]})
            self.answer(404, {"detail": "Not Found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            posts.append(self.path)
            if len(posts) > int(os.environ.get("STANDIN_DIE_AFTER_REQUESTS", "1000000")):
                print(json.dumps({"event": "died", "at": self.path}), flush=True)
                os._exit(1)  # a server that dies mid-run (the tests' case): the connection drops unanswered
            record = {"event": self.path}
            if self.path == "/v1/completions":
                code, payload = model.complete(body)
                asked = ("n", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "logprobs",
                         "return_tokens_as_token_ids", "skip_special_tokens")  # fmt: skip
                record.update(model=body.get("model"), prompt_tokens=len(body["prompt"]),
                              **{key: body.get(key) for key in asked})  # fmt: skip
            elif self.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter") and runtime_lora:
                name = body.get("lora_name")
                if self.path == "/v1/load_lora_adapter":
                    code, payload = model.load(name, body.get("lora_path"))
                    weights = Path(body.get("lora_path")) / "adapter_model.safetensors"
                    record.update(name=name, sha256=tensors_sha256(weights) if code == 200 else None)
                else:
                    code, payload = model.unload(name)
                    record.update(name=name)
            else:
                code, payload = 404, {"detail": "Not Found"}
            record["status"] = code
            print(json.dumps(record), flush=True)
            self.answer(code, payload)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    serve(parse(sys.argv[1:]))
