"""Command line: train and test a plugin model or any RecBole model.

    python run_recbole_hymirec.py -m SASRec -d ml-100k --config_files "a.yaml b.yaml" --epochs=5

Every ``--key=value`` not listed below goes to RecBole's Config (command line wins over
config_dict and files). The run ends with the metrics as a table and one JSON line
prefixed ``RESULT``.
"""
import argparse
import json
import sys

DEFAULT_MODEL = "HyMiRec"
DEFAULT_DATASET = "ml-100k"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help="plugin or RecBole model name")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help="dataset name")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML files, later ones win")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this node")
    parser.add_argument("--ip", default="localhost", help="master node address")
    parser.add_argument("--port", default="5678", help="master node port")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all nodes")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this node's first process")
    return parser


def metrics_table(result):
    """Valid and test metrics side by side, one metric a row."""
    valid, test = result["best_valid_result"] or {}, result["test_result"] or {}
    names = list(test) or list(valid)
    width = max([len(n) for n in names] + [6])
    lines = [f"{'metric':<{width}}  {'valid':>8}  {'test':>8}"]
    for name in names:
        lines.append(f"{name:<{width}}  {valid.get(name, float('nan')):>8.4f}  "
                     f"{test.get(name, float('nan')):>8.4f}")
    return "\n".join(lines)


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    try:  # the package checks numpy/pandas on import: a broken environment fails as one line
        from recbole_hymirec.cli import hand_overrides_to_recbole, run_reporting_user_errors
    except RuntimeError as err:
        errors = sys.modules.get("recbole_hymirec.errors")
        if errors is None or not isinstance(err, errors.EnvironmentMismatchError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2

    hand_overrides_to_recbole(extra)
    config_files = args.config_files.split() if args.config_files else None

    def job():
        from recbole_hymirec.quick_start import run

        result = run(args.model, args.dataset, config_file_list=config_files,
                     nproc=args.nproc, world_size=args.world_size, ip=args.ip,
                     port=args.port, group_offset=args.group_offset)
        if result is None:
            print("error: no result came back from rank 0", file=sys.stderr)
            return 1
        print(f"\n{result['model']} on {result['dataset']}\n{metrics_table(result)}")
        print("RESULT " + json.dumps(result, sort_keys=True))
        return 0

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
