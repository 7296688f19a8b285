"""The ``m2`` command line: generate data, validate and score submission files.

    m2 generate --out data/raw --scale 0.02 --stats
    m2 stats data/raw
    m2 validate --task 1 --phase 1 submissions/task1_phase1.parquet
    m2 score --task 1 --phase 1 FILE [--gt-dir data/raw/gt]
    m2 check-files RAW_DIR
    m2 export-recbole OUT [--split valid]

A malformed raw file ends a command with one ``error: <file>:<line> field '<f>': <reason>`` line
and exit status 1 (core.raw.exit_on_data_error), as in the stages.
"""

from __future__ import annotations

from pathlib import Path

import typer

from core.raw import RawDataError, exit_on_data_error

# m2 generate outside a checkout of this repository: its params.yaml (the package is installed editable)
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

app = typer.Typer(help="Amazon-M2 (KDD Cup 2023) pipeline tools.", no_args_is_help=True, add_completion=False)


@app.command()
@exit_on_data_error
def validate(
    file: Path = typer.Argument(..., help="submission parquet file"),
    task: int = typer.Option(..., min=1, max=3),
    phase: int = typer.Option(..., min=1, max=2),
    raw_dir: Path = typer.Option(Path("data/raw"),
                                 help="directory with the test files and products_train.csv"),
) -> None:
    """Check a submission against its test file: rows, order, locales, 100 distinct catalogue ids."""
    from core import submission

    try:
        frame = submission.read(file)
        catalogue = submission.load_catalogue(raw_dir) if task != 3 else None
        submission.validate(frame, task, submission.load_test_locales(raw_dir, task, phase), catalogue,
                            str(file))
    except RawDataError:
        raise
    except (submission.SubmissionError, ValueError, OSError) as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"OK: {file} is a valid task {task} phase {phase} submission ({frame.height} rows)")


@app.command()
@exit_on_data_error
def score(
    file: Path = typer.Argument(..., help="submission parquet file (from any pipeline)"),
    task: int = typer.Option(..., min=1, max=3),
    phase: int = typer.Option(..., min=1, max=2),
    gt_dir: Path = typer.Option(Path("data/raw/gt"), help="directory with gt_task{T}_phase{P}.csv"),
) -> None:
    """Print MRR@100, Recall@100, NDCG@100 (tasks 1/2) or BLEU (task 3), overall and per locale."""
    from core.submission import SubmissionError
    from pipeline import score as scoring

    try:
        result = scoring.score_file(file, task, phase, gt_dir, scoring.load_ceiling(gt_dir))
    except RawDataError:
        raise
    except (SubmissionError, ValueError, OSError) as exc:
        typer.echo(f"ERROR: {exc}", err=True)
        raise typer.Exit(1) from exc
    names = ["bleu"] if task == 3 else ["mrr@100", "recall@100", "ndcg@100", "share_of_ceiling"]
    typer.echo("locale  " + "  ".join(f"{n:>16}" for n in names) + "       n")
    for key, values in result.items():
        cells = [f"{values[n]:16.4f}" if n in values else f"{'n/a':>16}" for n in names]
        typer.echo(f"{key:<7} " + "  ".join(cells) + f"  {values['n']:>6}")


@app.command()
@exit_on_data_error
def generate(
    out: Path = typer.Option(Path("data/raw"), help="directory to write the competition files and gt/ into"),
    scale: float = typer.Option(0.02, min=1e-6, help="1.0 reproduces the paper's Table 2 sizes"),
    seed: int = typer.Option(42),
    stats: bool = typer.Option(False, "--stats", help="print the data report beside the paper's figures"),
) -> None:
    """Generate the synthetic Amazon-M2 (knobs from params.yaml `synthetic`: the current directory's,
    else the repository's)."""
    from core import config
    from core.io import setup_logging
    from pipeline import stats as data_stats
    from pipeline.synthetic import SyntheticConfig
    from pipeline.synthetic import generate as run

    setup_logging()
    params = config.PARAMS_FILE if config.PARAMS_FILE.exists() else REPO_PARAMS
    cfg = config.load_section(SyntheticConfig, "synthetic", params)
    result = run(out, scale, seed, cfg)
    typer.echo(f"wrote {out}: {sum(result['train_sessions'].values())} train sessions, "
               f"{result['interactions']} interactions, {result['unique_products']} products "
               f"in {result['seconds']}s")
    if stats:
        typer.echo(data_stats.format_stats(data_stats.compute_stats(out)))


@app.command("check-files")
@exit_on_data_error
def check_files_command(raw_dir: Path = typer.Argument(..., help="folder with the competition CSVs")) -> None:
    """Check that RAW_DIR holds the competition files that params.yaml `data.test_files` lists."""
    from core import config
    from core.dataconfig import DataConfig
    from pipeline.generate import REQUIRED, check_files

    params = config.PARAMS_FILE if config.PARAMS_FILE.exists() else REPO_PARAMS
    cfg = config.load_section(DataConfig, "data", params)
    wanted = check_files(raw_dir, cfg.test_files)
    typer.echo(f"OK: {raw_dir} holds {len(REQUIRED) + len(wanted)} competition files")


@app.command("stats")
@exit_on_data_error
def stats_command(raw_dir: Path = typer.Argument(..., help="raw directory, generated or real")) -> None:
    """Print the data report of RAW_DIR beside the real Amazon-M2 figures."""
    from core.io import setup_logging
    from pipeline import stats as data_stats

    setup_logging()
    typer.echo(data_stats.format_stats(data_stats.compute_stats(raw_dir)))


@app.command("export-recbole")
def export_recbole_command(
    out: Path = typer.Argument(..., help="RecBole data_path: the files go to OUT/<name>/"),
    split: str = typer.Option("valid", help="valid | test: the split under --data/split"),
    data: Path = typer.Option(Path("data"), help="the graph's data folder (prepared/ and split/)"),
    name: str = typer.Option("m2", help="RecBole dataset name"),
) -> None:
    """Write one split as RecBole atomic files (.inter, .test.inter, .item): pipeline/export_recbole.py."""
    from pipeline.export_recbole import export

    for file, rows in export(data, split, out, name).items():
        typer.echo(f"{out / name / file}: {rows} rows")


if __name__ == "__main__":
    app()
