"""The published contract: Powertools' OpenAPI document made one a generated client can trust.

``ContractResolver`` is Powertools' REST resolver whose ``get_openapi_schema`` answers the document after
:func:`published`, so GET /openapi.json, the committed openapi.json and GET /docs (Powertools' Swagger UI,
built from ``get_openapi_schema``) show one and the same document. :func:`published` changes what
Powertools generates so:

- a 204 has no content (Powertools gives every answer the handler's return type, and a generated client
  would then parse a successful DELETE's empty body as JSON);
- no 422 where nothing is validated (no body, no query: a path's taskId is any string, an unknown one 404);
- no schema that no operation uses (FastAPI's ``HTTPValidationError`` shape is not ours);
- each request body and answer carries the first example of its schema (Swagger UI's "Try it out").

Powertools' OpenAPI document models (some 40 pydantic models, a third of the API's import time) are
imported when a document is built (GET /openapi.json, GET /docs), never at a cold start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
    from aws_lambda_powertools.utilities.typing import LambdaContext

API_TITLE = "image-pipeline client API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Dependable image generations on the platform's models: the 4o Image API (gpt-4o-image), "
    "Flux Kontext (flux-kontext-pro, flux-kontext-max) and the Market's image models (Nano "
    "Banana, Nano Banana Pro and 2, Seedream 4.5, GPT Image 1.5, Flux 2, Imagen 4, Qwen Image "
    "Edit, Ideogram V3: GET /models lists them with their input fields). Submit a task, then "
    "read, list and delete your own tasks; every image is stored in this deployment's bucket "
    "and served through short-lived links. Send your API key as x-api-key. Every error is "
    "{message, errors: [{field, message}]}."
)
DOCS_PATH = "/docs"


def _document_settings() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    return {
        "title": API_TITLE,
        "version": API_VERSION,
        "description": API_DESCRIPTION,
        "security_schemes": {"apiKey": APIKey.model_validate({"name": "x-api-key", "in": APIKeyIn.header})},
    }


class ContractResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver whose OpenAPI document is :func:`published`'s, with GET /openapi.json's
    text (:meth:`contract_json`) and GET /docs, Powertools' Swagger UI of it (its script and styles
    inlined from the package, no CDN; the key entered once with Authorize)."""

    _contract: str | None = None
    _docs_enabled = False

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        # GET /docs is registered when its first request arrives: enable_swagger imports the document
        # models, which no other route needs at a cold start.
        if not self._docs_enabled and event.get("resource") == DOCS_PATH:
            self.enable_swagger(path=DOCS_PATH, persist_authorization=True, **_document_settings())
            self._docs_enabled = True
        return super().resolve(event, context)

    def get_openapi_schema(self, **settings: Any) -> OpenAPI:
        from aws_lambda_powertools.event_handler.openapi.models import OpenAPI

        generated = super().get_openapi_schema(**settings)
        return OpenAPI.model_validate(
            published(generated.model_dump(mode="json", by_alias=True, exclude_none=True))
        )

    def contract_json(self) -> str:
        """The published contract as GET /openapi.json serves it (openapi.json at the top of the
        repository is this, committed), the stage as its server."""
        if self._contract is None:
            from aws_lambda_powertools.event_handler.openapi.models import Server

            server = Server(url="/", description="this deployment (the execute-api stage URL)")
            document = self.get_openapi_json_schema(servers=[server], **_document_settings())
            self._contract = json.dumps(json.loads(document), indent=2)
        return self._contract


def published(document: dict[str, Any]) -> dict[str, Any]:
    """What Powertools generated (as JSON data), changed as the module docstring says."""
    schemas = document["components"]["schemas"]

    def with_example(content: dict[str, Any]) -> None:
        for media in content.values():
            name = str(media.get("schema", {}).get("$ref", "")).rsplit("/", 1)[-1]
            examples = schemas.get(name, {}).get("examples")
            if examples and "example" not in media:
                media["example"] = examples[0]

    for operations in document["paths"].values():
        for operation in operations.values():
            with_example(operation.get("requestBody", {}).get("content", {}))
            for answer in operation["responses"].values():
                with_example(answer.get("content", {}))
            answers = operation["responses"]
            if "204" in answers:
                answers["204"].pop("content", None)
            queried = any(parameter.get("in") != "path" for parameter in operation.get("parameters", []))
            if "requestBody" not in operation and not queried:
                answers.pop("422", None)
    while True:
        text = json.dumps({key: value for key, value in document.items() if key != "components"})
        text += json.dumps(schemas)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return document
        for name in unused:
            del schemas[name]
