"""Engines started from recipes (`loadgen serve`) and benchmark matrices over them (`loadgen matrix`)."""

from .process import Ready, ServerProcess
from .recipe import ENGINE_NAMES, METHODS, Launch, Recipe, load_recipe, render

__all__ = ["ENGINE_NAMES", "METHODS", "Launch", "Ready", "Recipe", "ServerProcess", "load_recipe", "render"]
