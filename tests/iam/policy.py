"""The functions' roles as deployed, and IAM's decision on a call.

`deployed_roles` takes template.yaml translated offline by the SAM translator (as CloudFormation
receives it: tests/sam/test_policies.py's `translate`), and resolves each function's role - its
inline policies, any IAM policy attached to it, conditions such as HasHmacKey evaluated with the
parameters given (defaults otherwise) - into statements over concrete ARNs in the test account, named
as the tests' moto resources are (devstack/common/aws_resources.py: ``<prefix>-<LogicalId>``).

`decide` is IAM's evaluation of identity policies: an explicit Deny wins, else an Allow is needed;
`*` and `?` are wildcards, actions compare case-insensitively, resources case-sensitively. A statement
counts only where its Condition holds for the call's request context (the recorder's `dynamodb:LeadingKeys`
and `s3:prefix`: `condition_holds`); a condition on any other key, or an operator not written here, is an
error (UnresolvedValue), never taken to hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.iam.recorder import ACCOUNT, REGION, Call, Permission
from tests.sam.test_policies import function_roles, translated_template

# AWS managed policies have no statements in the template; a role that carries one cannot be
# resolved offline until its document is written here (tests/sam/test_policies.py allows none).
KNOWN_MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {}
# The parameters every check resolves the roles with: the defaults, plus every optional secret
# configured, so that each conditional grant exists (HasHmacKey; with the default "" it does not).
DEPLOYED_PARAMETERS = {"WebhookHmacKeyParameter": "/imagegen/kie-webhook-hmac-key"}


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: str = ""  # the Condition block as JSON (condition_holds)
    origin: str = ""  # "<role> / <policy> #<n>"
    when: tuple[str, ...] = ()  # template conditions this statement exists under (HasHmacKey)


@dataclass(frozen=True)
class Role:
    function: str
    name: str
    statements: tuple[Statement, ...]


class _NoValue:
    pass


NO_VALUE = _NoValue()


class UnresolvedValue(LookupError):
    pass


class Deployment:
    """A template's values for one stack: parameters (defaults unless given), pseudo parameters, and
    the physical names its resources have in the tests' moto (``<prefix>-<LogicalId>``)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        prefix: str = "test",
        parameters: Mapping[str, str] | None = None,
        region: str = REGION,
        account: str = ACCOUNT,
    ) -> None:
        self.template = template
        self.prefix = prefix
        self.region = region
        self.account = account
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": prefix,
        }
        self._conditions: dict[str, bool] = {}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._truth(self.template["Conditions"][name], set())
        return self._conditions[name]

    def _truth(self, expression: Any, used: set[str]) -> bool:
        (function, argument), *_ = expression.items()
        if function == "Condition":
            used.add(argument)
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(value, used) for value in argument)
            return bool(str(left) == str(right))
        if function == "Fn::Not":
            return not self._truth(argument[0], used)
        if function == "Fn::And":
            return all(self._truth(item, used) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item, used) for item in argument)
        raise UnresolvedValue(f"condition function {function}")

    # -- resources ---------------------------------------------------------------------------
    def attributes(self, logical_id: str) -> dict[str, str]:
        """Ref and GetAtt values of one resource, as the tests' moto stack names it."""
        resource = self.template["Resources"][logical_id]
        kind, region, account = resource["Type"], self.region, self.account
        name = f"{self.prefix}-{logical_id}"
        if kind == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
            return {"Ref": name, "Arn": arn}
        if kind == "AWS::SQS::Queue":
            url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
            return {
                "Ref": url,
                "QueueUrl": url,
                "QueueName": name,
                "Arn": f"arn:aws:sqs:{region}:{account}:{name}",
            }
        if kind == "AWS::S3::Bucket":
            return {"Ref": name.lower(), "Arn": f"arn:aws:s3:::{name.lower()}"}
        if kind == "AWS::Events::EventBus":
            return {"Ref": name, "Name": name, "Arn": f"arn:aws:events:{region}:{account}:event-bus/{name}"}
        if kind == "AWS::Logs::LogGroup":
            group = str(self.resolve(resource["Properties"].get("LogGroupName", name), set()))
            return {"Ref": group, "Arn": f"arn:aws:logs:{region}:{account}:log-group:{group}:*"}
        if kind == "AWS::SecretsManager::Secret":
            # Its ARN ends in "-" and six random characters: the six as wildcards match moto's.
            arn = f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-??????"
            return {"Ref": arn, "Id": arn, "Arn": arn}
        if kind == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{region}:{account}:{name}"
            return {"Ref": arn, "TopicArn": arn, "TopicName": name}
        raise UnresolvedValue(f"{logical_id} ({kind}) has no stand-in in the tests' stack")

    def short_names(self) -> list[tuple[str, str]]:
        """(ARN, logical id) of every resource with a stand-in, longest ARN first."""
        found = []
        for logical_id in self.template["Resources"]:
            try:
                found.append((self.attributes(logical_id)["Arn"].removesuffix(":*"), logical_id))
            except (UnresolvedValue, KeyError):
                continue
        return sorted(found, key=lambda pair: -len(pair[0]))

    def display(self, arn: str) -> str:
        """An ARN as a reader of template.yaml names it: TasksTable/index/owner-createdAt."""
        for physical, logical_id in self.short_names():
            if arn == physical or arn.startswith(physical + "/") or arn == physical + ":*":
                return logical_id + arn[len(physical) :].removeprefix(":*")
        return arn.removeprefix(f"arn:aws:ssm:{self.region}:{self.account}:")

    # -- intrinsic functions ---------------------------------------------------------------------
    def resolve(self, value: Any, used: set[str]) -> Any:
        """`value` with every intrinsic function resolved; `used` collects the conditions consulted."""
        if isinstance(value, list):
            items = [self.resolve(item, used) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), *_ = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self._get_att(logical_id, attribute)
            if function == "Fn::Sub":
                return self._sub(argument, used)
            if function == "Fn::If":
                name, when_true, when_false = argument
                used.add(name)
                return self.resolve(when_true if self.condition(name) else when_false, used)
            if function == "Fn::Join":
                delimiter, items = argument
                return delimiter.join(str(item) for item in self.resolve(items, used))
            if function == "Fn::Select":
                index, items = argument
                return self.resolve(items, used)[int(self.resolve(index, used))]
            if function.startswith("Fn::"):
                raise UnresolvedValue(f"{function} is not resolved offline")
        resolved = {key: self.resolve(item, used) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.attributes(name)["Ref"]

    def _get_att(self, logical_id: str, attribute: str) -> str:
        found = self.attributes(logical_id)
        if attribute not in found:
            raise UnresolvedValue(f"{logical_id}.{attribute}")
        return found[attribute]

    def _sub(self, argument: Any, used: set[str]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(value, used) for name, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                return self._get_att(*name.split(".", 1))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in (value if isinstance(value, list) else [value]))


def _statement(raw: Mapping[str, Any], origin: str, when: Iterable[str]) -> Statement:
    return Statement(
        effect=raw["Effect"],
        actions=_strings(raw["Action"]) if "Action" in raw else (),
        resources=_strings(raw["Resource"]) if "Resource" in raw else (),
        not_actions=_strings(raw["NotAction"]) if "NotAction" in raw else (),
        not_resources=_strings(raw["NotResource"]) if "NotResource" in raw else (),
        condition=json.dumps(raw["Condition"], sort_keys=True) if raw.get("Condition") else "",
        origin=origin,
        when=tuple(sorted(when)),
    )


def _document_statements(
    deployment: Deployment, document: Any, origin: str, inherited: set[str]
) -> list[Statement]:
    """A policy document's statements, each with the conditions it exists under."""
    statements = document["Statement"]
    found = []
    for position, raw in enumerate(statements if isinstance(statements, list) else [statements]):
        used = set(inherited)
        resolved = deployment.resolve(raw, used)
        if resolved is NO_VALUE:
            continue
        found.append(_statement(resolved, f"{origin} #{position + 1}", used))
    return found


def role_of(deployment: Deployment, function: str, role: str) -> Role:
    resources = deployment.template["Resources"]
    properties = resources[role]["Properties"]
    if properties.get("PermissionsBoundary"):
        raise UnresolvedValue(f"{role}: a permissions boundary is not evaluated here")
    statements: list[Statement] = []
    for policy in properties.get("Policies", []):
        used: set[str] = set()
        if isinstance(policy, dict) and "Fn::If" in policy:
            name, when_true, when_false = policy["Fn::If"]
            used.add(name)
            policy = when_true if deployment.condition(name) else when_false
            if policy == {"Ref": "AWS::NoValue"}:
                continue
        statements += _document_statements(
            deployment, policy["PolicyDocument"], f"{role} / {policy['PolicyName']}", used
        )
    for arn in deployment.resolve(properties.get("ManagedPolicyArns", []), set()):
        if arn not in KNOWN_MANAGED_POLICIES:
            raise UnresolvedValue(
                f"{role}: managed policy {arn} has no document here (KNOWN_MANAGED_POLICIES)"
            )
        statements += [_statement(raw, f"{role} / {arn}", ()) for raw in KNOWN_MANAGED_POLICIES[arn]]
    for name, resource in resources.items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        if {"Ref": role} in resource["Properties"].get("Roles", []):
            used = {resource["Condition"]} if "Condition" in resource else set()
            if any(not deployment.condition(condition) for condition in used):
                continue
            statements += _document_statements(
                deployment, resource["Properties"]["PolicyDocument"], name, used
            )
    return Role(function, role, tuple(statements))


def deployed_roles(
    template: Mapping[str, Any] | None = None,
    *,
    prefix: str = "test",
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Role]:
    """Every function's role, by the function's logical id."""
    template = template or translated_template()
    deployment = Deployment(template, prefix=prefix, parameters=parameters)
    return {
        function: role_of(deployment, function, role)
        for function, role in function_roles(dict(template)).items()
    }


# -- IAM's decision ------------------------------------------------------------------------------


@cache
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def action_matches(pattern: str, action: str) -> bool:
    return _wildcard(pattern, True).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    return _wildcard(pattern, False).fullmatch(resource) is not None


def applies(statement: Statement, permission: Permission) -> bool:
    """Whether the statement's Action/NotAction and Resource/NotResource cover the permission."""
    if statement.not_actions:
        action_ok = not any(action_matches(p, permission.action) for p in statement.not_actions)
    else:
        action_ok = any(action_matches(p, permission.action) for p in statement.actions)
    if statement.not_resources:
        resource_ok = not any(resource_matches(p, permission.resource) for p in statement.not_resources)
    else:
        resource_ok = any(resource_matches(p, permission.resource) for p in statement.resources)
    return action_ok and resource_ok


# -- conditions --------------------------------------------------------------------------------
# The request-context keys the recorder gives a call (tests/iam/recorder.py), and the operators
# judged here: the string ones, with the set qualifiers and IfExists, as IAM evaluates them.
EVALUATED_KEYS = frozenset({"dynamodb:LeadingKeys", "s3:prefix"})
_STRING_OPERATORS = {
    "StringEquals": lambda value, pattern: value == pattern,
    "StringLike": lambda value, pattern: resource_matches(pattern, value),  # * and ?, case-sensitive
}


@cache
def _condition_block(condition: str) -> dict[str, dict[str, Any]]:
    block: dict[str, dict[str, Any]] = json.loads(condition)
    return block


def condition_holds(statement: Statement, permission: Permission) -> bool:
    """Whether every test of the statement's Condition holds for the permission's request context."""
    if not statement.condition:
        return True
    return all(
        _test_holds(operator, key, expected, permission)
        for operator, tests in _condition_block(statement.condition).items()
        for key, expected in tests.items()
    )


def _test_holds(operator: str, key: str, expected: Any, permission: Permission) -> bool:
    qualifier, _, name = operator.rpartition(":")  # "ForAllValues:StringLike"
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    negated = name.startswith("StringNot")
    compare = _STRING_OPERATORS.get(name.replace("StringNot", "String", 1))
    if key not in EVALUATED_KEYS or compare is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise UnresolvedValue(
            f"condition {operator} on {key} is not evaluated here "
            f"(keys: {', '.join(sorted(EVALUATED_KEYS))}; operators: String[Not]Equals, String[Not]Like, "
            "ForAllValues:/ForAnyValue:, ...IfExists)"
        )
    patterns = [str(item) for item in (expected if isinstance(expected, list) else [expected])]
    values = [value for name_, value in permission.context if name_ == key]

    def one(value: str) -> bool:
        matched = any(compare(value, pattern) for pattern in patterns)
        return not matched if negated else matched

    if qualifier == "ForAllValues":  # every value of the request fits; none at all fits too (IAM's rule)
        return all(one(value) for value in values)
    if qualifier == "ForAnyValue":  # some value fits; none at all does not
        return any(one(value) for value in values)
    if not values:  # the request has no such key: only a negated operator, or ...IfExists, holds
        return negated or if_exists
    return all(one(value) for value in values)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[Statement, ...]
    denied_by: tuple[Statement, ...]
    # Allow statements that cover the action and resource, but whose Condition the call does not meet.
    unmet: tuple[Statement, ...] = ()


def decide(statements: Iterable[Statement], permission: Permission) -> Decision:
    """Explicit Deny wins (a Deny counts where its condition holds); else an Allow whose condition holds."""
    matching = [s for s in statements if applies(s, permission)]
    holding = [s for s in matching if condition_holds(s, permission)]
    denied = tuple(s for s in holding if s.effect == "Deny")
    allowed = tuple(s for s in holding if s.effect == "Allow")
    unmet = tuple(s for s in matching if s.effect == "Allow" and s not in holding)
    return Decision(not denied and bool(allowed), allowed, denied, unmet)


@dataclass(frozen=True)
class Denial:
    call: Call
    permission: Permission
    decision: Decision

    def __str__(self) -> str:
        if self.decision.denied_by:
            why = f"denied by {self.decision.denied_by[0].origin}"
        elif self.decision.unmet:
            unmet = self.decision.unmet[0]
            why = f"outside the condition of {unmet.origin}: {unmet.condition}"
        else:
            why = "no statement allows it"
        context = ", ".join(f"{key}={value}" for key, value in self.permission.context)
        return (
            f"{self.call.function}: {self.call.operation} needs {self.permission.action} on "
            f"{self.permission.resource}{f' with {context}' if context else ''} ({why}; called from "
            f"{self.call.site or '?'}" + (f", step {self.call.step!r}" if self.call.step else "") + ")"
        )


def denials(roles: Mapping[str, Role], calls: Iterable[Call]) -> list[Denial]:
    found = []
    for call in calls:
        role = roles.get(call.function)
        for permission in call.permissions:
            decision = decide(role.statements if role else (), permission)
            if not decision.allowed:
                found.append(Denial(call, permission, decision))
    return list({str(d): d for d in found}.values())


@dataclass(frozen=True)
class Grant:
    """One action on one resource pattern that a role allows."""

    function: str
    action: str
    resource: str
    statement: Statement


def grants(role: Role) -> list[Grant]:
    return [
        Grant(role.function, action, resource, statement)
        for statement in role.statements
        if statement.effect == "Allow"
        for action in statement.actions or ("NotAction:" + ",".join(statement.not_actions),)
        for resource in statement.resources or ("NotResource:" + ",".join(statement.not_resources),)
    ]


def uses(grant: Grant, calls: Iterable[Call]) -> list[tuple[Call, Permission]]:
    """The recorded calls of the grant's function that this grant allows (its condition met)."""
    return [
        (call, permission)
        for call in calls
        if call.function == grant.function
        for permission in call.permissions
        if action_matches(grant.action, permission.action)
        and resource_matches(grant.resource, permission.resource)
        and condition_holds(grant.statement, permission)
    ]
