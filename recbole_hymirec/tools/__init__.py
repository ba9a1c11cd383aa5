"""Command lines of the plugin, one module each, e.g.
``python -m recbole_hymirec.tools.leaderboard --help``."""
