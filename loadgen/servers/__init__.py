"""Engines started from recipes (`loadgen serve`, and each recipe of a `loadgen matrix`), and the
recipes and matrix plans shipped with loadgen (recipes/, plans/: package data)."""

from .process import Ready, ServerProcess
from .recipe import ENGINE_NAMES, METHODS, Launch, Recipe, load_recipe, render

__all__ = ["ENGINE_NAMES", "METHODS", "Launch", "Ready", "Recipe", "ServerProcess", "load_recipe", "render"]
