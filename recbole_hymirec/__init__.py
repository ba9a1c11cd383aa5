"""recbole_hymirec: HyMiRec as a RecBole plugin."""
__version__ = "0.2.0"

from recbole_hymirec import compat as _compat

_compat.apply()

# RecBole's registries know the plugin's metrics (ILD) once the package is imported, for
# the plugin's Config and RecBole's own alike; after the environment checks above.
from recbole_hymirec.metrics import register_metrics  # noqa: E402

register_metrics()
