"""The Powertools "hello" anchor of the cold-start benchmark: what a minimal, idiomatic REST function
imports - Logger, Metrics, the REST resolver with validation, one pydantic body, boto3."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

logger = Logger(service="hello")
metrics = Metrics(namespace="Hello", service="hello")
app = APIGatewayRestResolver(enable_validation=True)


class Greeting(BaseModel):
    name: str


@app.post("/hello")
def hello(greeting: Greeting) -> dict[str, str]:
    return {"message": f"hello {greeting.name}", "region": boto3.session.Session().region_name or ""}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
