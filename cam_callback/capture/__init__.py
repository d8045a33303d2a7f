"""The floor that runs a model.

Hooks that are always removed, layers, the guided and perturbation passes, the method registry and the
engine. Imports the core floor only.
"""
