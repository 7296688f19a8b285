"""The report stage's library: analysis (frames), plots (PNGs), page (blocks and their templates)."""
