"""Trainers of the plugin models: ``<Model>Trainer`` classes are picked by utils.get_trainer."""
