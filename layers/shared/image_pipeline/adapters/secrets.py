"""Secrets come from SSM SecureString parameters (or Secrets Manager ARNs), cached for five minutes."""

from __future__ import annotations

SECRET_CACHE_SECONDS = 300
# What SSM and Secrets Manager answer for a name that does not exist (not a passing fault).
NOT_FOUND_CODES = frozenset({"ParameterNotFound", "ResourceNotFoundException"})


class SecretNotFound(LookupError):
    """No parameter or secret by that name; any other failure (throttling, access) propagates as it is."""


def resolve_secret(plain_value: str, parameter_name: str) -> str:
    """The secret named by `parameter_name`; the plain value only when no name is configured (local runs)."""
    if not parameter_name:
        return plain_value
    from aws_lambda_powertools.utilities import parameters  # imported only where a secret is configured

    try:
        if parameter_name.startswith("arn:aws:secretsmanager:"):
            secret = parameters.get_secret(parameter_name, max_age=SECRET_CACHE_SECONDS)
        else:
            secret = parameters.get_parameter(parameter_name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
    except parameters.exceptions.GetParameterError as error:
        # Powertools wraps the SDK's error: its code is on the exception it was raised from.
        cause = error.__cause__ or error.__context__
        code = getattr(cause, "response", {}).get("Error", {}).get("Code")
        if code in NOT_FOUND_CODES:
            raise SecretNotFound(f"{parameter_name} does not exist") from error
        raise
    return str(secret)
