"""Amazon-M2 (KDD Cup 2023) pipeline: one module per DVC stage, the report, the generator and the engines."""
