"""Table 1 from run directories: mean ± standard error over seeds, beside the paper's numbers.

    python -m scripts.make_table1 runs/table1                          # final values
    python -m scripts.make_table1 runs/table1 --best-during-training   # best value of each run
    python -m scripts.make_table1 runs/table1 --expect table1_cifar10 --expect table1_stl10
    python -m scripts.make_table1 runs/smoke --metric d_real:max --out results/smoke

Reads every run directory under RUNS_ROOT (its config.yaml and metrics.jsonl), groups the
runs by dataset, norm and scale, and writes to --out (default: RUNS_ROOT) table1.md,
table1.tex, table1.csv and scales.csv (every scale, the one picked marked). Runs that are
unfinished, lack a metric, or are missing from the grid (every seed seen in the dataset,
or the cells of the --expect presets' sweeps) are listed in table1.md and on stderr.
"""

import argparse
import sys
from pathlib import Path

from harness.results import METRICS, build_table, expected_from_preset, find_runs
from harness.results.render import csv_rows, csv_scales, latex, markdown

ROOT = Path(__file__).resolve().parents[1]


def metric_spec(text: str) -> tuple[str, str]:
    key, _, better = text.rpartition(":")
    if not key or better not in ("max", "min"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY:max or KEY:min, e.g. is50k:max")
    return key, better


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs_root", type=Path, help="folder holding run directories (searched recursively)"
    )
    parser.add_argument(
        "--best-during-training",
        action="store_true",
        help="each run's best value of a metric instead of its final one",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: RUNS_ROOT)")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="PRESET",
        help="report every cell of experiment=PRESET's sweep that has no run",
    )
    parser.add_argument(
        "--metric",
        action="append",
        type=metric_spec,
        metavar="KEY:max|min",
        help="metrics to tabulate (default: is50k:max and fid10k_5k:min)",
    )
    parser.add_argument("--title", default="Table 1", help="heading of table1.md and table1.tex")
    parser.add_argument("--note", help="a line under the heading, e.g. what the runs are")
    args = parser.parse_args(argv)

    runs = find_runs(args.runs_root)
    if not runs:
        hint = ""
        if (Path(args.runs_root) / "table1.md").is_file():
            hint = (
                f"; {args.runs_root} holds a table made from runs, not runs: pass the runs' "
                "folder, e.g. runs/smoke for results/smoke (results/README.md)"
            )
        parser.error(f"no run directories (config.yaml) under {args.runs_root}{hint}")
    expected = None
    if args.expect:
        expected = set().union(*(expected_from_preset(p, ROOT / "configs") for p in args.expect))
    metrics = dict(args.metric) if args.metric else METRICS
    table = build_table(runs, metrics, args.best_during_training, expected)

    out = args.out or args.runs_root
    out.mkdir(parents=True, exist_ok=True)
    title = f"{args.title}: {len(runs)} runs under {args.runs_root}"
    (out / "table1.md").write_text(markdown(table, title, args.note))
    (out / "table1.tex").write_text(latex(table, title, args.note))
    (out / "table1.csv").write_text(csv_rows(table))
    (out / "scales.csv").write_text(csv_scales(table))
    print(
        f"{len(table.rows)} rows from {len(runs)} runs -> {out}/table1.{{md,tex,csv}}, scales.csv"
    )
    for line in table.problems:
        print(f"missing or left out: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
