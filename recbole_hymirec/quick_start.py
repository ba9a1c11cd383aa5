"""Programmatic entry points: the plugin's counterparts of ``recbole.quick_start``.

They resolve plugin models, trainers and datasets before RecBole's, and return results
as plain JSON-friendly dicts.
"""
import logging
import os
import sys
from logging import getLogger

import torch
import torch.distributed as dist
import yaml
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, set_color

from recbole_hymirec.compat import apply_trainer_fixes
from recbole_hymirec.config import Config
from recbole_hymirec.data.seen_items import mask_seen_items
from recbole_hymirec.distributed import barrier, from_rank_zero
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.metrics import attach_metric_data
from recbole_hymirec.model.random_state import init_seed
from recbole_hymirec.presets import budget_keys
from recbole_hymirec.property_files import properties_dir
from recbole_hymirec.utils import create_dataset, data_preparation, get_model, get_trainer


def plain_result(result):
    """OrderedDicts of numpy floats -> dicts of Python floats (for JSON)."""
    if isinstance(result, dict):
        return {k: plain_result(v) for k, v in result.items()}
    if hasattr(result, "item"):
        return result.item()
    return result


# RecBole's logger writes under ./log/<model>/ (a fixed root in init_logger)
LOG_ROOT = "log"


def init_run_logger(config):
    """RecBole's ``init_logger`` once the folders it and the trainer write to exist.

    RecBole creates them with a check-then-``makedirs``, so two processes starting at once in
    a fresh folder (two leaderboards side by side, or the ranks of a distributed run) race, and
    the loser fails with FileExistsError. ``exist_ok`` creation has no such window.
    """
    os.makedirs(os.path.join(LOG_ROOT, config["model"]), exist_ok=True)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    init_logger(config)


def _build(config):
    """Seed, dataset, splits and model for ``config`` (shared by training and reloading)."""
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if config["mask_seen_items"]:
        mask_seen_items(config, train_data, valid_data, test_data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    return dataset, train_data, valid_data, test_data, model




def dataset_statistics(dataset):
    """Counts of the loaded dataset (after RecBole's filtering), padding ids excluded."""
    users, items = dataset.user_num - 1, dataset.item_num - 1
    return {"users": users, "items": items, "interactions": dataset.inter_num,
            "interactions_per_user": round(float(dataset.avg_actions_of_users), 2),
            "sparsity": round(1.0 - dataset.inter_num / (users * items), 5)}


def model_property_files(model):
    """RecBole's and the plugin's ``properties/model/<model>.yaml`` that exist."""
    import recbole


    candidates = [os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{model}.yaml"),
                  os.path.join(properties_dir(), "model", f"{model}.yaml")]
    return [path for path in candidates if os.path.isfile(path)]


def _json_value(value):
    return value if isinstance(value, (bool, int, float, str, list, dict, type(None))) else str(value)


def hyper_parameters(config):
    """Final values of the model's own keys (its property files) and of its budget keys
    (presets.py)."""
    keys = set(budget_keys(config["model"]))
    for path in model_property_files(config["model"]):
        with open(path) as f:
            keys |= set(yaml.safe_load(f) or {})
    return {key: _json_value(config[key]) for key in sorted(keys)}


def device_name(config):
    device = config["device"]
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _log_flops(model, dataset, config, logger):
    # An LLM-backed model opts out: RecBole's FLOPs probe deep-copies the whole model.
    if not getattr(model, "log_flops", True):
        return
    flops = get_flops(model, dataset, config["device"], logger, construct_transform(config))
    logger.info(set_color("FLOPs", "blue") + f": {flops}")


def resume_training(trainer, checkpoint_file):
    """Continue a stopped run from ``checkpoint_file`` (its best state, epoch and optimizer).

    New best states go to this run's own file, which starts as a copy of the resumed state:
    the earlier run's checkpoint is never overwritten.
    """
    own_file = trainer.saved_model_file
    require_checkpoint_file(checkpoint_file)
    try:
        trainer.resume_checkpoint(checkpoint_file)
    except Exception as err:  # noqa: BLE001 - unreadable, or another model's checkpoint
        raise ConfigError(f"cannot resume from '{checkpoint_file}': {type(err).__name__}: "
                          f"{str(err)[:200]}; it was left as it is. Fix: resume with the model "
                          "and config that wrote it.") from err
    trainer.saved_model_file = own_file
    trainer._save_checkpoint(trainer.start_epoch - 1, verbose=False)


def unique_checkpoint_file(path, pid=None):
    """RecBole names a checkpoint ``<model>-<local time to the second>.pth``: two runs started
    in the same second (parallel jobs, tuning workers) would write, and test, one file. Adds
    this process's id, and a counter when an earlier run of this process took the name."""
    stem, ext = os.path.splitext(path)
    stem = f"{stem}-{os.getpid() if pid is None else pid}"
    candidate, n = stem + ext, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate


def _trainer(config, model, train_data):
    """The model's trainer, with the plugin's fixes and the data its metrics read."""
    apply_trainer_fixes()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    attach_metric_data(trainer, config, train_data.dataset, model)
    return trainer


def _train_and_test(config, model, train_data, valid_data, test_data, saved, verbose=True):
    trainer = _trainer(config, model, train_data)
    # Only rank 0 writes the best checkpoint; every rank reloads it for the test.
    trainer.saved_model_file = from_rank_zero(unique_checkpoint_file(trainer.saved_model_file))
    if config["resume"]:
        resume_training(trainer, config["resume"])
    valid_curve = []  # [epoch, valid score] after every evaluation of this process
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, verbose=verbose, saved=saved,
        show_progress=config["show_progress"] and verbose,
        callback_fn=lambda epoch, score: valid_curve.append([epoch, round(float(score), 4)]),
    )
    barrier()  # the other ranks must not read the best checkpoint while rank 0 writes it
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"] and verbose
    )
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "valid_curve": valid_curve,
        "train_loss_curve": [[epoch, round(float(loss), 4)]
                             for epoch, loss in sorted(trainer.train_loss_dict.items())],
        "saved_model_file": trainer.saved_model_file if saved else None,
        "trainable_parameters": trainable_parameters(model),
    }


def run_recbole_hymirec(
    model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None
):
    """Train and test ``model`` on ``dataset``; returns the result dict (best valid, test)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict)
    init_run_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset, train_data, valid_data, test_data, model = _build(config)
    logger.info(dataset)
    logger.info(model)
    _log_flops(model, dataset, config, logger)

    result = plain_result(_train_and_test(config, model, train_data, valid_data, test_data, saved))
    result.update(dataset_statistics=dataset_statistics(dataset),
                  hyper_parameters=hyper_parameters(config), device=device_name(config))
    logger.info("The running environment of this training is as follows:\n"
                + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")

    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def _run_rank(rank, model, dataset, config_file_list, config_dict, saved, queue):
    config_dict = dict(config_dict or {}, local_rank=rank)
    run_recbole_hymirec(model, dataset, config_file_list, config_dict, saved, queue)


def run(model, dataset, config_file_list=None, config_dict=None, saved=True,
        nproc=1, world_size=-1, ip="localhost", port="5678", group_offset=0):
    """One process, or ``nproc`` spawned ranks through RecBole's distributed path."""
    if nproc == 1 and world_size <= 0:
        return run_recbole_hymirec(model, dataset, config_file_list, config_dict, saved)
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {}, world_size=nproc if world_size == -1 else world_size,
                       ip=ip, port=port, nproc=nproc, offset=group_offset)
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, config_dict, saved, queue),
             nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """Objective for RecBole's HyperTuning (hyperopt); needs no ray."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    init_run_logger(config)
    logging.basicConfig(level=logging.ERROR)
    _, train_data, valid_data, test_data, model = _build(config)
    result = _train_and_test(config, model, train_data, valid_data, test_data, saved,
                             verbose=False)
    return plain_result(result)


def require_checkpoint_file(model_file):
    if not os.path.isfile(model_file):
        raise ConfigError(f"checkpoint '{model_file}' does not exist. Fix: pass the "
                          "saved_model_file of a finished run (see its RESULT line).")


def read_checkpoint(model_file):
    """A training checkpoint as a dict; ConfigError (file untouched) when it is not one."""
    require_checkpoint_file(model_file)
    try:
        checkpoint = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - truncated zip, bad pickle, wrong format...
        raise ConfigError(f"checkpoint '{model_file}' is unreadable ({type(err).__name__}: "
                          f"{str(err)[:120]}); it was left as it is. Fix: use another checkpoint "
                          "or retrain.") from err
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise ConfigError(f"checkpoint '{model_file}' is not a RecBole training checkpoint "
                          "(no config / state_dict). Fix: pass a file written by a training run.")
    return checkpoint


def load_data_and_model(model_file, edit_config=None):
    """Config, model (weights restored), dataset and loaders from a checkpoint file.

    Works for plugin models, which RecBole's own ``load_data_and_model`` cannot find.
    The file is a trusted local checkpoint written by a training run (it pickles the Config).
    ``edit_config(config)``, when given, changes the config before anything is built.
    """
    checkpoint = read_checkpoint(model_file)
    config = checkpoint["config"]
    if edit_config is not None:
        edit_config(config)
    # RecBole's metrics use numpy aliases (np.float ...) that a Config restores when it is
    # built, not when it is unpickled: a fresh process would fail in NDCG without this
    config.compatibility_settings()
    init_run_logger(config)
    getLogger().info(config)
    dataset, train_data, valid_data, test_data, model = _build(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def evaluate_loaded(config, model, dataset, train_data, valid_data, test_data):
    """``{"valid_result", "test_result"}`` of a loaded model (``load_data_and_model``), with the
    metrics, and the metric data, of its training run."""
    trainer = _trainer(config, model, train_data)
    trainer.eval_collector.data_collect(train_data)  # as fit does: coverage and popularity read it
    return {split: plain_result(trainer.evaluate(data, load_best_model=False, show_progress=False))
            for split, data in (("valid_result", valid_data), ("test_result", test_data))}
