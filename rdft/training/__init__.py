"""Training: config schema, hardware probe, memory planner, launch-file writer, `rdft train`."""
