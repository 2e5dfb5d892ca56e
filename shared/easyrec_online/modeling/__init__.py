"""Model plane: EasyRec pipeline configs, training runs, version publishing (model runtime)."""
