"""Training steps of HyMiRec over a synthetic catalogue (``python -m recbole_hymirec.tools.scale train``)."""


def add_train_parser(parts):
    parts.add_parser("train", help="a few HyMiRec training steps over a synthetic catalogue")


def measure_training(args):
    raise NotImplementedError
