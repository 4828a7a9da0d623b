"""The base of every pydantic model here: built on first use, so a function builds only the models it uses.

A model class still collects its fields when its module is imported; what is deferred is building its
validator and serializer (most of the cost), which happens the first time the model validates,
serializes or describes itself. A function that never uses a model (the callback never sees an API
request, the API never sees a callback) never pays for it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(defer_build=True)
