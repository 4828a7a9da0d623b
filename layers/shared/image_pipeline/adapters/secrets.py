"""Secrets come from SSM SecureString parameters (or Secrets Manager ARNs), cached for five minutes."""

from __future__ import annotations

SECRET_CACHE_SECONDS = 300


def resolve_secret(plain_value: str, parameter_name: str) -> str:
    """The secret named by `parameter_name`; the plain value only when no name is configured (local runs)."""
    if not parameter_name:
        return plain_value
    from aws_lambda_powertools.utilities import parameters  # imported only where a secret is configured

    if parameter_name.startswith("arn:aws:secretsmanager:"):
        secret = parameters.get_secret(parameter_name, max_age=SECRET_CACHE_SECONDS)
    else:
        secret = parameters.get_parameter(parameter_name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
    return str(secret)
