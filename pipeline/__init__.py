"""Amazon-M2 (KDD Cup 2023) pipeline: shared infrastructure and one module per DVC stage."""
