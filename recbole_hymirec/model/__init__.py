"""Plugin models: name -> module that defines a class of that name.

Modules are imported lazily so that resolving a RecBole baseline never loads an LLM stack.
"""
PLUGIN_MODELS = {
    "ComiRec": "recbole_hymirec.model.comirec",
    "HyMiRec": "recbole_hymirec.model.hymirec",
}
