"""Hyper-parameter search with RecBole's HyperTuning (hyperopt; ray is not needed).

    python -m recbole_hymirec.tools.run_hyper -m HyMiRec -d ml-100k \
        --params_file properties/hyper/HyMiRec.hyper [--config_files "a.yaml"] \
        [--algo exhaustive|random|bayes] [--max_evals 20] [--output_file hyper.jsonl] [--key=value ...]

The params file has RecBole's format, one line per parameter: ``name choice [a,b]``,
``name uniform low,high``, ``name loguniform low,high`` or ``name quniform low,high,q``.
Each trial trains on train, selects on valid and reports valid and test; the output file
gets one JSON line per trial (params, best valid result, test result). Model selection uses
the valid metric only: never pick by the test column. A key searched over must not also be
given on the command line (the command line wins over every trial's value).
"""
import argparse
import json
import sys
from functools import partial

from recbole_hymirec.atomic import write_atomic
from recbole_hymirec.cli import hand_overrides_to_recbole, run_reporting_user_errors


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "-m", default="HyMiRec")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--params_file", required=True, help="search space (RecBole format)")
    parser.add_argument("--config_files", default=None, help="fixed YAML files")
    parser.add_argument("--algo", default="exhaustive", choices=["exhaustive", "random", "bayes"])
    parser.add_argument("--max_evals", type=int, default=100, help="trials for random/bayes")
    parser.add_argument("--early_stop", type=int, default=10, help="trials without progress")
    parser.add_argument("--output_file", default="hyper.jsonl", help="one JSON line per trial")
    return parser


def _objective(config_dict, config_file_list, model, dataset):
    from recbole_hymirec.quick_start import objective_function

    return objective_function(dict(config_dict, model=model, dataset=dataset), config_file_list,
                              saved=True)


def export_trials(tuner, output_file):
    write_atomic(output_file, "".join(
        json.dumps({"params": params, "best_valid_result": result["best_valid_result"],
                    "test_result": result["test_result"]}, sort_keys=True) + "\n"
        for params, result in tuner.params2result.items()))


def run_hyper(model, dataset, params_file, config_files=None, algo="exhaustive", max_evals=100,
              early_stop=10, output_file="hyper.jsonl"):
    """Run the search; returns (best params, best valid score, number of trials)."""
    from recbole.trainer import HyperTuning

    tuner = HyperTuning(partial(_objective, model=model, dataset=dataset), algo=algo,
                        params_file=params_file, fixed_config_file_list=config_files,
                        max_evals=max_evals, early_stop=early_stop)
    tuner.run()
    export_trials(tuner, output_file)
    return tuner.best_params, tuner.best_score, len(tuner.params2result)


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    hand_overrides_to_recbole(extra)

    def job():
        best, score, trials = run_hyper(
            args.model, args.dataset, args.params_file,
            args.config_files.split() if args.config_files else None, args.algo,
            args.max_evals, args.early_stop, args.output_file)
        print("HYPER " + json.dumps({"best_params": best, "best_valid_score": score,
                                     "trials": trials, "output_file": args.output_file},
                                    sort_keys=True, default=str))
        return 0

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
