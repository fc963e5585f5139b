"""Training datasets: the registry (`rdft datasets list|info`) and the leakage guard."""
