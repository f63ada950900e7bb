"""rigl-repro: sparse training from scratch (RigL and its baselines), reproducing Sundar & Dwaraknath's
ML Reproducibility Challenge report on Evci et al. (2020)."""
