"""The few fixes RecBole 1.2.1 needs on today's torch / numpy / pandas.

Applied once, on ``import recbole_hymirec``:

* numpy >= 2.0 removed the aliases ``np.float_``, ``np.complex_`` and ``np.unicode_``, which
  RecBole 1.2.1's Config reads when it is built: they are restored (as numpy 1.x defined them);
* pandas >= 3.0 (copy-on-write): RecBole 1.2.1 fills missing values with
  ``feat[field].fillna(..., inplace=True)``, which no longer writes into the frame, so NaN
  tokens and floats stayed unfilled; the filling assigns the filled column instead;
* pandas >= 3.0: ``Series.agg(len)`` gives the Series' length, not each row's, so RecBole
  1.2.1's id remapping of token_seq fields split every field into one piece and failed
  ("Length of values (1) does not match length of index"); the remapping takes each row's
  length;
* a clear error for numpy >= 3 or pandas >= 4, with which RecBole 1.2.1 has never run;
* RecBole's own checkpoint loads (best-model reload after ``fit``, ``resume_checkpoint``)
  work on torch >= 2.6: RecBole pickles its Config into every checkpoint, which the new
  ``weights_only=True`` default refuses. Only calls made from RecBole's trainer module on
  an existing local file are affected; every other ``torch.load`` keeps torch's default.
* RecBole's trainer wraps the model in DistributedDataParallel with CUDA ``device_ids``
  always; a CPU model (gloo ranks) must get ``device_ids=None``.
* RecBole's evaluation collector calls ``.cpu()`` on every collected value, so the metrics
  that need the item count or item popularity (ItemCoverage, AveragePopularity, TailPercentage)
  crash with "'int' object has no attribute 'cpu'"; the patched collector moves only tensors.

Nothing else in RecBole is patched (the gloo backend on CPU is chosen by our Config).
"""
import copy
import functools
import os
import sys

from recbole_hymirec.errors import EnvironmentMismatchError

# (package, first unsupported major version, why)
_UNSUPPORTED_MAJORS = (
    ("numpy", 3, "RecBole 1.2.1 and its shims here are tested up to numpy 2"),
    ("pandas", 4, "RecBole 1.2.1 and its shims here are tested up to pandas 3"),
)
# numpy 1.x aliases removed in numpy 2.0 that RecBole 1.2.1's Config.compatibility_settings reads
NUMPY1_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
# Modules whose torch.load calls read checkpoints RecBole itself wrote (trusted files).
TRUSTED_CHECKPOINT_CALLERS = ("recbole.trainer.trainer",)

_applied = False


def _major(version):
    return int(version.split(".")[0])


def check_versions():
    """Raise EnvironmentMismatchError naming the package and the fix."""
    import numpy
    import pandas

    modules = {"numpy": numpy, "pandas": pandas}
    for name, bad_major, why in _UNSUPPORTED_MAJORS:
        version = modules[name].__version__
        if _major(version) >= bad_major:
            raise EnvironmentMismatchError(
                f"{name} {version} is installed but {why}. "
                f"Fix: pip install '{name}<{bad_major}' (or run `make install`)."
            )


def restore_numpy_aliases():
    """numpy >= 2.0: define the removed aliases RecBole reads (a no-op on numpy 1.x)."""
    import numpy

    for alias, target in NUMPY1_ALIASES.items():
        if alias not in vars(numpy):
            setattr(numpy, alias, getattr(numpy, target))


def _fill_nan_by_assignment(self):
    """RecBole's ``Dataset._fill_nan`` with each filled column assigned back (pandas >= 3 does
    not write an inplace ``fillna`` on a column into its frame): tokens -> 0 (``[PAD]``), floats
    -> the field's mean, sequences -> empty arrays."""
    import numpy
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = numpy.int64 if ftype == FeatureType.TOKEN_SEQ else numpy.float64
                feat[field] = feat[field].apply(
                    lambda x: numpy.array([], dtype=dtype) if isinstance(x, float) else x)


def patch_nan_filling():
    from recbole.data.dataset import Dataset

    Dataset._fill_nan = _fill_nan_by_assignment


def _remap_token_seq_by_row_length(self, remap_list):
    """RecBole's ``Dataset._remap`` (ids by ``pandas.factorize`` over every field sharing them)
    with each token_seq row split back by its own length."""
    import numpy
    import pandas
    from recbole.utils import FeatureType

    if len(remap_list) == 0:
        return
    tokens, split_point = self._concat_remaped_tokens(remap_list)
    new_ids_list, mapping = pandas.factorize(tokens)
    new_ids_list = numpy.split(new_ids_list + 1, split_point)
    mapping = numpy.array(["[PAD]"] + list(mapping))
    token_id = {t: i for i, t in enumerate(mapping)}
    for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list):
        if field not in self.field2id_token:
            self.field2id_token[field] = mapping
            self.field2token_id[field] = token_id
        if ftype == FeatureType.TOKEN:
            feat[field] = new_ids
        elif ftype == FeatureType.TOKEN_SEQ:
            row_ends = numpy.cumsum(feat[field].map(len).to_numpy())[:-1]
            feat[field] = pandas.Series(numpy.split(new_ids, row_ends), index=feat.index,
                                        dtype=object)


def patch_token_seq_remap():
    from recbole.data.dataset import Dataset

    Dataset._remap = _remap_token_seq_by_row_length


def _is_local_file(f):
    return isinstance(f, (str, os.PathLike)) and os.path.isfile(f)


def _trusting_torch_load(original_load):
    @functools.wraps(original_load)
    def load(f, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if (
            "weights_only" not in kwargs
            and caller in TRUSTED_CHECKPOINT_CALLERS
            and _is_local_file(f)
        ):
            kwargs["weights_only"] = False
        return original_load(f, *args, **kwargs)

    load.__hymirec_trusting__ = True
    return load


def patch_checkpoint_loading():
    import torch

    if not getattr(torch.load, "__hymirec_trusting__", False):
        torch.load = _trusting_torch_load(torch.load)


def _ddp_for_any_device(ddp_class):
    def wrap(module, device_ids=None, **kwargs):
        on_cpu = next(module.parameters()).device.type == "cpu"
        return ddp_class(module, device_ids=None if on_cpu else device_ids, **kwargs)

    wrap.__hymirec_ddp__ = True
    return wrap


def patch_cpu_ddp():
    import recbole.trainer.trainer as recbole_trainer

    if not getattr(recbole_trainer.DistributedDataParallel, "__hymirec_ddp__", False):
        recbole_trainer.DistributedDataParallel = _ddp_for_any_device(
            recbole_trainer.DistributedDataParallel)


def _get_data_struct_moving_tensors_only(self):
    import torch

    for key, value in self.data_struct._data_dict.items():
        if isinstance(value, torch.Tensor):
            self.data_struct._data_dict[key] = value.cpu()
    returned_struct = copy.deepcopy(self.data_struct)
    for key in ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"):
        if key in self.data_struct:
            del self.data_struct[key]
    return returned_struct


def patch_collector():
    from recbole.evaluator.collector import Collector

    Collector.get_data_struct = _get_data_struct_moving_tensors_only


def apply():
    global _applied
    if _applied:
        return
    check_versions()
    restore_numpy_aliases()
    patch_nan_filling()
    patch_token_seq_remap()
    patch_checkpoint_loading()
    patch_collector()
    _applied = True


def apply_trainer_fixes():
    """Fixes that need ``recbole.trainer`` imported (done lazily: it is slow to import)."""
    patch_cpu_ddp()
