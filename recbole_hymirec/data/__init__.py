"""Datasets of the plugin: ``<Model>Dataset`` classes are looked up in PLUGIN_DATASETS."""
PLUGIN_DATASETS = {"HyMiRec": "recbole_hymirec.data.dataset"}
