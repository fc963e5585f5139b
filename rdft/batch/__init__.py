"""`rdft batch tasks.json`: several `rdft run`s side by side on one host, each on its own GPUs.

The tasks file is the user's guide's format:

    {"tasks": [{"model": "Qwen/Qwen2.5-7B-Instruct", "benchmark": "aime25", "gpus": "0,1",
                "timeout": "12h", "benchmark_description": "...", "loop_n": 10}]}

Each task is its own `rdft run` process (own CUDA_VISIBLE_DEVICES, own log folder under the
batch folder, output in `<log>.out`). No sleeps: envs shared by the tasks are built once, by
whichever task gets the env manager's file lock first. A live table shows each task's loop,
stage, best score and elapsed time. Ctrl-C stops every task (each stops its children) and
prints how to resume them.

With `--executor slurm` each task is an sbatch job instead (rdft/slurm.py): its GPUs as
`--gpus` (a task's GPU count is how many indices it lists; which GPUs is Slurm's choice), CPUs
and memory per GPU, `--time` from the task's timeout plus a margin (or the task's own `time`),
partition/account/QOS/extra `#SBATCH` lines from options or per task, output into the task's log
folder. The script resumes the run when its log holds one, so a job that was pre-empted, hit
its time limit or was cancelled resumes when resubmitted (`sbatch <script>`; with `--requeue`,
Slurm requeues it itself). The live table reads squeue (pending with its reason, running on
which node) and the run's own log; Ctrl-C scancels the jobs (asked, or `--cancel-on-exit`).
Envs a run needs that are not built yet are built by one env job first, which the task jobs
depend on: a file lock on shared storage may not hold between nodes.
"""

from rdft.batch.local import run_batch
from rdft.batch.slurm import SlurmOptions, run_slurm_batch

__all__ = ["SlurmOptions", "run_batch", "run_slurm_batch"]
