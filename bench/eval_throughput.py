"""Generation throughput of scoring on one GPU: lm-eval's `hf` defaults against rdft's settings.

Both runs score the same AIME-style items with the same model through `lm_eval run` in the
eval env; only the model arguments and batching differ. Baseline: what `lm_eval run --model hf
--model_args pretrained=M` does by default (batch size 1, the model's default dtype). rdft: the
arguments and batch size `rdft eval` chooses (`rdft/evaluation/generation.py`). Tokens
are counted with the model's tokenizer over the generated responses; each run's wall time
includes loading the model, so use enough items (`--items`) for decoding to dominate.

    python bench/eval_throughput.py --model /path/to/model [--items 256] [--max-gen-toks 256]

Target (issue 4): rdft ≥ 5× the baseline's generated tokens/s without vLLM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rdft.envs import EnvManager  # noqa: E402
from rdft.evaluation.benchmarks import get_benchmark  # noqa: E402
from rdft.evaluation.generation import hf_batch_size, longest_prompt_bound  # noqa: E402
from rdft.evaluation.run import model_args, task_yaml, write_predictions, write_task  # noqa: E402
from rdft.hardware import gpus as host_gpus  # noqa: E402
from rdft.settings import get_settings  # noqa: E402

COUNT_TOKENS = (
    "import json, sys\nfrom transformers import AutoTokenizer\n"
    "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
    "rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]\n"
    "print(sum(len(tok(r['response'], add_special_tokens=False)['input_ids']) for r in rows))\n"
)


def run(env, label: str, work: Path, docs: Path, model: str, args: str, batch: str, max_gen_toks: int) -> dict:
    folder = work / label
    (folder / "tasks").mkdir(parents=True, exist_ok=True)
    task = f"bench_{label}"
    entry = get_benchmark("aime25")
    write_task(folder / "tasks", entry, task, task_yaml(entry, task, docs, 1, max_gen_toks))
    command = ["lm_eval", "run", "--model", "hf", "--model_args", args, "--tasks", task,
               "--include_path", str(folder / "tasks"), "--log_samples", "--output_path", str(folder / "out"),
               "--batch_size", batch, "--apply_chat_template"]  # fmt: skip
    start = time.perf_counter()
    result = env.run(command, cwd=folder, log_path=folder / "lm_eval.log", echo=False)
    wall = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"{label}: lm_eval failed; see {folder / 'lm_eval.log'}")
    predictions = folder / "predictions.jsonl"
    write_predictions(folder / "out", task, predictions)
    counted = env.run(["python", "-c", COUNT_TOKENS, model, str(predictions)], echo=False)
    tokens = int(counted.tail.strip().splitlines()[-1])
    return {
        "model_args": args,
        "batch_size": batch,
        "wall_s": round(wall, 1),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="A local model folder.")
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rdft-bench-eval"))
    args = parser.parse_args()
    memory = [gpu.memory_gib for gpu in host_gpus()]
    if not memory:
        raise SystemExit("bench/eval_throughput.py needs a CUDA GPU (H100/H200)")
    env = EnvManager(get_settings()).ensure("eval")
    args.work.mkdir(parents=True, exist_ok=True)
    docs = args.work / "docs.jsonl"
    docs.write_text(
        "".join(
            json.dumps({"id": str(i), "problem": f"Compute {i} + {i * 7} and explain each step.", "answer": str(8 * i)})
            + "\n"
            for i in range(args.items)
        )
    )
    model = str(Path(args.model).resolve())
    baseline = run(env, "baseline", args.work, docs, model, f"pretrained={model}", "1", args.max_gen_toks)
    prompt_tokens = longest_prompt_bound([docs])
    batch = hf_batch_size(model, min(memory), args.max_gen_toks, prompt_tokens)
    ours = run(
        env,
        "rdft",
        args.work,
        docs,
        model,
        model_args("hf", model, None, memory, args.max_gen_toks, prompt_tokens),
        str(batch or "auto"),
        args.max_gen_toks,
    )
    print(
        json.dumps(
            {"baseline": baseline, "rdft": ours, "ratio": ours["tokens_per_s"] / baseline["tokens_per_s"]}, indent=2
        )
    )


if __name__ == "__main__":
    main()
