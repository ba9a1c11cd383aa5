"""Write the synthetic multi-interest dataset (``recbole_hymirec.data.synthetic``).

    python -m recbole_hymirec.tools.synthetic --out FOLDER [--name synth-mi] [--users 600] [--seed 2020]

writes RecBole atomic files ``FOLDER/NAME/NAME.{inter,item}`` and ``NAME.interests`` (the
planted topics of every user, JSON), then prints one line ``SYNTHETIC {json}`` of statistics.
Run a model on it with ``-d NAME --data_path=FOLDER``.
"""
import argparse
import json
import sys

from recbole_hymirec.data.synthetic import SyntheticSpec, statistics, write_dataset


def build_parser():
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder that receives NAME/ (the data_path)")
    parser.add_argument("--name", default="synth-mi", help="dataset name (default: synth-mi)")
    parser.add_argument("--users", type=int, default=defaults.n_users,
                        help=f"number of users (default: {defaults.n_users})")
    parser.add_argument("--topics", type=int, default=defaults.n_topics,
                        help=f"number of topics (default: {defaults.n_topics})")
    parser.add_argument("--items_per_topic", type=int, default=defaults.items_per_topic,
                        help=f"items per topic (default: {defaults.items_per_topic})")
    parser.add_argument("--seed", type=int, default=2020, help="random seed (default: 2020)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    spec = SyntheticSpec(n_users=args.users, n_topics=args.topics,
                         items_per_topic=args.items_per_topic)
    try:
        folder = write_dataset(args.out, args.name, spec, args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("SYNTHETIC " + json.dumps({"folder": folder, **statistics(folder, args.name)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
