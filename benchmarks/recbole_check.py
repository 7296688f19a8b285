"""Does RecBole load ``m2 export-recbole``'s files and train on them? Run with a Python that has RecBole.

    m2 export-recbole /tmp/rb_data --data data                     # the project's venv: the atomic files
    /path/to/recbole-venv/bin/python benchmarks/recbole_check.py --data-path /tmp/rb_data \
        --data "synthetic default, valid split" --record benchmarks/results/recbole_export.json

It imports RecBole only (not this project: RecBole's pins rarely fit the project's environment), loads the
dataset ``m2`` (``m2.inter`` with ``m2.item``) as a session dataset, session_id as RecBole's user, then
trains RecBole's own GRU4Rec for ``--epochs`` with its defaults (cross-entropy over every item) and scores
it with RecBole's full-sort evaluation on its leave-one-out split of those sessions (each session's last
item), MRR@100 and Recall@100. The record holds RecBole's and the dataset's sizes as RecBole read them,
so a reader sees the files load; the figures are RecBole's split, not the project's query targets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", type=Path, required=True, help="the OUT of m2 export-recbole")
    parser.add_argument("--data", help="what the export holds, for the record (default: --data-path)")
    parser.add_argument("--dataset", default="m2")
    parser.add_argument("--model", default="GRU4Rec")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()

    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    config = Config(model=args.model, dataset=args.dataset, config_dict={
        "data_path": str(args.data_path), "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["session_id", "item_id", "timestamp"],
                     "item": ["item_id", "locale", "price", "brand", "color"]},
        "MAX_ITEM_LIST_LENGTH": 20, "train_neg_sample_args": None, "loss_type": "CE",
        "epochs": args.epochs,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "metrics": ["MRR", "Recall"], "topk": [100], "valid_metric": "MRR@100", "device": "cpu",
        "use_gpu": False, "show_progress": False, "checkpoint_dir": "/tmp/recbole_check_saved",
        "save_dataset": False, "save_dataloaders": False, "seed": 42, "reproducibility": True})
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = Trainer(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    out = {
        "data": args.data or str(args.data_path), "recbole": recbole.__version__, "model": args.model,
        "epochs": args.epochs,
        "sessions": int(dataset.user_num - 1), "items": int(dataset.item_num - 1),
        "sequences": int(dataset.inter_num),  # RecBole's augmentation: one per event after a session's first
        "item_features": sorted(dataset.item_feat.columns) if dataset.item_feat is not None else [],
        "test_sessions": len(test.dataset), "mrr@100": round(float(result["mrr@100"]), 4),
        "recall@100": round(float(result["recall@100"]), 4), "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))
    if args.record:
        record = json.loads(args.record.read_text()) if args.record.exists() else {"runs": []}
        record["runs"].append(out)
        args.record.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
