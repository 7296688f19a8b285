"""Task 3, next product title: a two-stage package of its own (see the README layout)."""
