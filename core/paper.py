"""The published sizes of Amazon-M2 (the KDD Cup 2023 paper): what the generator scales by ``scale``
and what the data report (pipeline/stats.py) sets real or generated files beside."""

# Paper, Table 2 (train sessions and products per locale) and the task-1 test file.
TRAIN_SESSIONS = {"DE": 1_111_416, "JP": 979_119, "UK": 1_182_181, "ES": 89_047, "FR": 117_561, "IT": 126_925}
PRODUCTS = {"DE": 518_327, "JP": 395_009, "UK": 500_180, "ES": 42_503, "FR": 44_577, "IT": 50_461}
TASK1_TEST = {"DE": 104_568, "JP": 96_467, "UK": 115_936}
# The paper gives only totals for tasks 2 and 3; we assume they split in proportion to the
# locales' train sessions (ES/FR/IT for task 2, all six for task 3), and that phase 2 has the
# same sizes as phase 1.
TASK2_TEST_TOTAL = 34_688
TASK3_TEST_TOTAL = 56_422
