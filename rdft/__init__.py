"""rdft: an agentic LLM fine-tuning workbench for GPU hosts without Docker."""

__version__ = "0.1.0"
