"""Resolve models, trainers, datasets and data loaders: the plugin's first, then RecBole's."""
import difflib
import importlib
import os
import pkgutil

from recbole_hymirec.data import PLUGIN_DATASETS
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model import PLUGIN_MODELS

# RecBole's model packages. "exlib_recommender" is left out: importing it needs
# lightgbm / xgboost, which is where RecBole's misleading error for unknown names comes from.
RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
)
RECBOLE_EXLIB_MODELS = ("LightGBM", "XGBoost")


def _recbole_model_modules():
    """{lower-case module name: package} for RecBole's models, found without importing them."""
    import recbole.model

    root = os.path.dirname(recbole.model.__file__)
    modules = {}
    for package in RECBOLE_MODEL_PACKAGES:
        for info in pkgutil.iter_modules([os.path.join(root, package)]):
            modules[info.name] = package
    return modules


def plugin_model_names():
    return sorted(PLUGIN_MODELS)


def _import_attr(module_path, name):
    return getattr(importlib.import_module(module_path), name)


def _unknown_model_error(name, recbole_modules):
    candidates = plugin_model_names() + sorted(recbole_modules)
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    plugin = ", ".join(plugin_model_names()) or "(none registered)"
    return ConfigError(
        f"Unknown model '{name}'. Plugin models: {plugin}. RecBole's "
        f"{len(recbole_modules)} built-in models were searched too (names are "
        f"case-sensitive, e.g. SASRec, GRU4Rec, BERT4Rec).{hint}"
    )


def get_model(model_name):
    """Model class for ``model_name``: plugin models first, then RecBole's."""
    if model_name in PLUGIN_MODELS:
        return _import_attr(PLUGIN_MODELS[model_name], model_name)
    if model_name in RECBOLE_EXLIB_MODELS:
        import recbole.utils

        return recbole.utils.get_model(model_name)
    recbole_modules = _recbole_model_modules()
    package = recbole_modules.get(model_name.lower())
    if package is not None:
        module = importlib.import_module(f"recbole.model.{package}.{model_name.lower()}")
        if hasattr(module, model_name):
            return getattr(module, model_name)
        spelled = [n for n in dir(module) if n.lower() == model_name.lower()]
        if spelled:
            raise ConfigError(
                f"Unknown model '{model_name}'. Model names are case-sensitive: "
                f"did you mean '{spelled[0]}'?"
            )
    raise _unknown_model_error(model_name, recbole_modules)


def get_trainer(model_type, model_name):
    """``<Model>Trainer`` from the plugin when it exists, else RecBole's choice."""
    trainer_module = importlib.import_module("recbole_hymirec.trainer")
    trainer = getattr(trainer_module, f"{model_name}Trainer", None)
    if trainer is not None:
        return trainer
    import recbole.utils

    return recbole.utils.get_trainer(model_type, model_name)


def get_dataset_class(config):
    """``<Model>Dataset`` from the plugin when it exists, else None (RecBole decides)."""
    module_path = PLUGIN_DATASETS.get(config["model"])
    return _import_attr(module_path, f"{config['model']}Dataset") if module_path else None


def create_dataset(config):
    """Materialise an embedded dataset if needed, check the files, build the Dataset."""
    from recbole.utils import ModelType

    from recbole_hymirec.data.embedded import check_time_field, ensure_dataset_files

    ensure_dataset_files(config)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        check_time_field(config)
    dataset_class = get_dataset_class(config)
    if dataset_class is None:
        import recbole.data

        return recbole.data.create_dataset(config)
    return dataset_class(config)


def data_preparation(config, dataset):
    """RecBole's splits and loaders; a HyMiRecDataset's loaders also attach to every batch the
    user-history fields its model reads (data/transform.py)."""
    import recbole.data

    from recbole_hymirec.data.dataset import HyMiRecDataset
    from recbole_hymirec.data.transform import attach_user_history

    train_data, valid_data, test_data = recbole.data.data_preparation(config, dataset)
    if isinstance(dataset, HyMiRecDataset):
        attach_user_history(config, train_data, valid_data, test_data)
    return train_data, valid_data, test_data
