"""Scoring and presentation of a run's leakage: metrics, the scorer, report.md, TensorBoard, privacy-utility tables (prints nothing)."""
