"""Shared code of the three functions: models, settings, adapters and domain logic."""
