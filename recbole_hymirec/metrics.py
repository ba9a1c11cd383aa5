"""Metrics the plugin adds to RecBole's evaluator.

* ``ILD`` (intra-list diversity @k): the mean pairwise cosine distance ``1 - cos`` between
  the content embeddings of the top-k items, averaged over users. The embeddings are the
  centred content-LLM item embeddings of stage 1 (raw causal-LM states are anisotropic, so
  without centring every pair would look alike). 0 = k copies of one item, 1 = unrelated.

``register_metrics`` (run on ``import recbole_hymirec``) adds the classes to RecBole's
registries, so ``metrics: [..., ILD]``
works in any YAML and for any model (SASRec too) run through the plugin's entry points;
``attach_metric_data`` hands the evaluator the item embeddings the metric reads.
"""
import os

import torch
import yaml
from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.property_files import properties_dir

ITEM_CONTENT_KEY = "data.item_content"
STAGE1_DEFAULTS_FILE = os.path.join("model", "HyMiRec.yaml")


class ILD(AbstractMetric):
    r"""Intra-list diversity of the top-k lists over content embeddings.

    .. math::
        \mathrm{ILD@K} = \frac{1}{|U|} \sum_{u} \frac{2}{K(K-1)} \sum_{i<j \le K}
        \left(1 - \cos(e_{r_{u,i}}, e_{r_{u,j}})\right)
    """

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", ITEM_CONTENT_KEY]

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    def calculate_metric(self, dataobject):
        items = dataobject.get("rec.items")  # [U, max_k]
        if ITEM_CONTENT_KEY not in dataobject:
            raise ConfigError(
                "ILD needs the items' content embeddings in the evaluator. Fix: train and "
                "evaluate through recbole_hymirec's entry points, or call "
                "recbole_hymirec.metrics.attach_metric_data(trainer, config, dataset, model) "
                "on your own trainer first.")
        content = dataobject.get(ITEM_CONTENT_KEY)  # [n_items, D]
        unit = torch.nn.functional.normalize(content.float(), dim=-1)  # [n_items, D]
        return {f"ild@{k}": round(intra_list_distance(items[:, :k], unit), self.decimal_place)
                for k in self.topk}


def intra_list_distance(items, unit_embeddings, chunk=512):
    """Mean over rows of the mean pairwise ``1 - cos`` among each row's items (``[U, k]``)."""
    k = items.shape[1]
    if k < 2 or items.shape[0] == 0:
        return 0.0
    total = 0.0
    for start in range(0, items.shape[0], chunk):
        vectors = unit_embeddings[items[start:start + chunk].long()]  # [u, k, D]
        cosine = vectors @ vectors.transpose(1, 2)  # [u, k, k]
        off_diagonal = cosine.sum(dim=(1, 2)) - cosine.diagonal(dim1=1, dim2=2).sum(dim=1)  # [u]
        total += (1.0 - off_diagonal / (k * (k - 1))).sum().item()
    return total / items.shape[0]


PLUGIN_METRICS = [ILD]


def register_metrics():
    """Add the plugin's metrics to RecBole's registries (idempotent). The Config reads
    ``metric_types`` and the Evaluator ``metrics_dict``: both are the dicts changed here."""
    for metric in PLUGIN_METRICS:
        name = metric.__name__.lower()
        recbole_register.metrics_dict[name] = metric
        recbole_register.metric_information[name] = metric.metric_need
        recbole_register.metric_types[name] = metric.metric_type
        if metric.smaller and name not in recbole_register.smaller_metrics:
            recbole_register.smaller_metrics.append(name)


# ----------------------------------------------------------------------------- data for metrics

def needs_item_content(config):
    return any(m.lower() == "ild" for m in config["metrics"])


class _WithStage1Defaults:
    """A config view where stage-1 keys missing from ``config`` (a baseline's config does not
    load HyMiRec.yaml) take HyMiRec's defaults, so every model is measured on the same
    embeddings as HyMiRec with the same settings (the centred embeddings: ILD compares rows in
    one space, whatever the item tower reads)."""

    def __init__(self, config):
        self._config = config
        with open(os.path.join(properties_dir(), STAGE1_DEFAULTS_FILE)) as f:
            self._defaults = yaml.safe_load(f) or {}

    def __getitem__(self, key):
        value = self._config[key]
        return self._defaults.get(key) if value is None else value


def item_content_embeddings(config, dataset, model=None):
    """``[n_items, D]`` centred content embeddings: the model's own when it has them
    (HyMiRec), else stage 1's (cached) embeddings built with HyMiRec's default settings."""
    own = getattr(model, "item_content", None)
    if isinstance(own, torch.Tensor):
        return own.detach().cpu()
    from recbole_hymirec.model.item_codes import content_embeddings

    embeddings, _ = content_embeddings(_WithStage1Defaults(config), dataset)
    return embeddings


def attach_metric_data(trainer, config, dataset, model):
    """Give the trainer's evaluator what the plugin's metrics read (nothing when unused)."""
    if needs_item_content(config):
        trainer.eval_collector.data_struct.set(
            ITEM_CONTENT_KEY, item_content_embeddings(config, dataset, model))
