"""The few fixes RecBole 1.2.1 needs on today's torch / numpy / pandas.

Applied once, on ``import recbole_hymirec``:

* a clear error when numpy >= 2 or pandas >= 3 is installed (RecBole 1.2.1 uses
  ``np.float_`` in every Config and mishandles token_seq fields on pandas 3);
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
    ("numpy", 2, "RecBole 1.2.1 uses np.float_, removed in numpy 2"),
    ("pandas", 3, "RecBole 1.2.1 mishandles token_seq fields and NaN filling on pandas 3"),
)
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
    patch_checkpoint_loading()
    patch_collector()
    _applied = True


def apply_trainer_fixes():
    """Fixes that need ``recbole.trainer`` imported (done lazily: it is slow to import)."""
    patch_cpu_ddp()
