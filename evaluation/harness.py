"""lm-evaluation-harness on rdft's own task YAMLs only: `lm_eval run` with the same arguments and
the same output files (results_*.json, samples_<task>_*.jsonl under --output_path), through
lm-eval's Python API with `TaskManager(include_defaults=False)`.

Why: the `lm_eval` command indexes every task lm-eval ships (thousands of YAMLs) before it
looks at ours — about 12 of the 20 seconds a small scoring run takes on 2 cores. rdft scores
its own tasks only, so the index holds only the include path.

    python evaluation/harness.py --model hf --model_args pretrained=… --tasks T1,T2 --include_path DIR
        --output_path DIR [--apply_chat_template] [--batch_size 4] [--device cpu] [--seed 0] [--limit N]
        [--gen_kwargs k=v]

Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--model_args", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--include_path", required=True)
    parser.add_argument("--output_path", required=True)
    parser.add_argument("--apply_chat_template", action="store_true")
    parser.add_argument("--log_samples", action="store_true", help="Accepted for lm_eval's spelling; always on.")
    parser.add_argument("--batch_size", default="auto")
    parser.add_argument("--device", help="cuda, cpu, …; lm_eval's default when left out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float)
    parser.add_argument("--gen_kwargs", help="k=v,… added to every task's generation_kwargs (lm_eval's spelling)")
    args = parser.parse_args()

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    tracker = EvaluationTracker(output_path=args.output_path)
    batch_size = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    results = simple_evaluate(
        model=args.model,
        model_args=args.model_args,
        tasks=args.tasks.split(","),
        batch_size=batch_size,
        device=args.device,
        limit=args.limit,
        gen_kwargs=args.gen_kwargs,
        log_samples=True,
        evaluation_tracker=tracker,
        apply_chat_template=args.apply_chat_template,
        task_manager=TaskManager(include_path=args.include_path, include_defaults=False),
        random_seed=args.seed,
        numpy_random_seed=args.seed,
        torch_random_seed=args.seed,
        fewshot_random_seed=args.seed,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    print(json.dumps(results["results"], default=handle_non_serializable))


if __name__ == "__main__":
    main()
