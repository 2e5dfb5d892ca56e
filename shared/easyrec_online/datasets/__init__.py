"""Loaders that turn public data sets into the service's actions and profiles."""
