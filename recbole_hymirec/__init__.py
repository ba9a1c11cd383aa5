"""recbole_hymirec: HyMiRec as a RecBole plugin."""
__version__ = "0.2.0"

from recbole_hymirec import compat as _compat

_compat.apply()
