"""Loop-level experiment tracking (`rdft run --track mlflow|tensorboard`, FT_TRACK): after the base
model is scored and after every loop, recipes/track_run.py mirrors the run's records into the
tracker from inside the train env (which holds MLflow's client and TensorBoard; the host imports
neither). It reads only the run folder's files, so a resumed or redone loop is mirrored as it now
stands. A tracker that fails (a server down, a bad URI) is a warning, never the run's end."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from rdft.envs import EnvManager
from rdft.resources import recipes_dir
from rdft.settings import Settings

# A tracking server's credentials: secrets, so the runner keeps them from children unless passed
# on purpose; MLflow reads them from its own environment, rdft never writes them anywhere.
CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
TRACKING_TIMEOUT = 300.0


def track(settings: Settings, log_dir: Path, tracker: str, console: Console) -> bool:
    """Mirror the run into `tracker`; False (and one warning) when it failed."""
    extra = {name: os.environ[name] for name in CREDENTIALS if os.environ.get(name)}
    log = log_dir / "tracking.log"
    command = ["python", str(recipes_dir() / "track_run.py"), "--log-dir", str(log_dir), "--tracker", tracker]
    result = (
        EnvManager(settings)
        .ensure("train")
        .run(command, extra_env=extra, echo=False, log_path=log, timeout=TRACKING_TIMEOUT)
    )
    if not result.ok:
        console.print(f"rdft: warning: tracking to {tracker} failed (see {log}); the run goes on")
    return result.ok
