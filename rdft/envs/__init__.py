"""Isolated environments built from lock files: specs, locks, conda/venv backends, ensure."""

from rdft.envs.manager import Env, EnvManager, EnvStatus

__all__ = ["Env", "EnvManager", "EnvStatus"]
