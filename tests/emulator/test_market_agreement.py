"""The bundle's Market registry and the emulator's own Market table agree, model by model.

Two tables written apart (image_pipeline/market_registry.py for the bundle, devstack/emulator/
market_validation.py for the emulated platform) check each other: what the registry accepts, sent as
the registry normalizes it, the emulator accepts; what the registry refuses, the emulator refuses, and
names the same field. Cases: every enum value, every limit and one past it, each wrong kind, unknown
and missing fields, then random mixtures of those; and one valid and one invalid request per model
over HTTP. Our own bounds the platform does not document (URLs past 2,048 characters) and the
``upload:``/``task:`` references (the API resolves them before anything goes upstream) are left out.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from emulator_helpers import api
from hypothesis import strategies as st
from image_pipeline.market_fields import InputField
from image_pipeline.market_registry import MODELS, validate_input
from market_helpers import CREATE_TASK

from devstack.emulator.market_validation import MARKET_MODELS, ValidationError, validate_market
from tests.fuzz._support import fuzz_settings

URL = "https://img.test/in/photo.png"
WRONG_KINDS: list[Any] = [7, 1.5, True, "text", [URL], {"a": 1}]


def valid_values(spec: InputField) -> list[Any]:
    """Values of the field both tables must take: every enum value, each limit."""
    match spec.kind:
        case "text" if spec.enum:
            return list(spec.enum)
        case "text":
            shortest = max(spec.min_length or 0, 1 if spec.required else 0, 1)
            longest = spec.max_length or 300
            return ["a" * shortest, "b" * longest, "a prompt with spaces"]
        case "integer":
            low, high = int(spec.minimum or 0), int(spec.maximum or 1_000_000)
            return [low, high, (low + high) // 2] + ([] if spec.minimum is not None else [-5])
        case "number":
            low, high = spec.minimum or 0.0, spec.maximum or 100.0
            return [low, high, (low + high) / 2, int(high)]
        case "boolean":
            return [True, False]
        case "count":
            return [*spec.enum, int(spec.enum[-1])]
        case "image_url":
            return [URL, "http://127.0.0.1:9000/bucket/uploads/x?X-Amz-Signature=abc"]
        case _:  # image_urls
            most = spec.max_items or 4
            return [[URL] * max(1, spec.min_items or 0), [URL] * most]


def invalid_values(spec: InputField) -> list[Any]:
    """Values both tables must refuse: wrong kinds, values off the enum, one past each limit."""
    wrong = [value for value in WRONG_KINDS if not _same_kind(spec, value)]
    match spec.kind:
        case "text":
            extra = ["not-in-enum"] if spec.enum else []
            if spec.max_length and not spec.enum:
                extra.append("c" * (spec.max_length + 1))
            if spec.required and not spec.enum:
                extra += ["", "   "]
            if (spec.min_length or 0) > 1:
                extra.append("d" * (spec.min_length - 1))
            return wrong + extra
        case "integer" | "number":
            extra = [] if spec.minimum is None else [spec.minimum - 1]
            extra += [] if spec.maximum is None else [spec.maximum + 1]
            return wrong + extra + (["5"] if spec.kind == "integer" else ["5.0"])
        case "boolean":
            return [*wrong, "true", 0]
        case "count":
            return [*wrong, "0", str(len(spec.enum) + 1), "one", 0, len(spec.enum) + 1]
        case "image_url":
            return [*wrong, "ftp://img.test/a.png", "no url at all", "https://"]
        case _:  # image_urls
            extra = [[URL] * ((spec.max_items or 4) + 1), ["ftp://img.test/a.png"], [7]]
            return wrong + extra + ([[]] if spec.required else [])


def _same_kind(spec: InputField, value: Any) -> bool:
    """Whether a value of WRONG_KINDS is of the field's own kind (then it is not a wrong kind)."""
    match spec.kind:
        case "text":
            return isinstance(value, str) and (not spec.enum or value in spec.enum)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "image_url":
            return value == URL
        case "image_urls":
            return value == [URL]
        case _:  # count: 7 is refused as past the enum anyway
            return False


def baseline(model: str) -> dict[str, Any]:
    """The model's required fields, each at its first valid value."""
    entry = MODELS[model]
    return {name: valid_values(entry.fields[name])[0] for name in entry.required_fields}


def emulator_verdict(model: str, given: Any) -> str | None:
    """None when the emulator accepts ``{"model", "input"}``, else its 422 message."""
    try:
        validate_market({"model": model, "input": given})
    except ValidationError as refusal:
        return str(refusal)
    return None


def assert_agree(model: str, given: dict[str, Any]) -> None:
    verdict = validate_input(model, given)
    if isinstance(verdict, dict):
        assert emulator_verdict(model, verdict) is None, (model, given)
        return
    refusal = emulator_verdict(model, given)
    assert refusal is not None, (model, given, verdict)
    assert any(refusal.startswith(problem.field) for problem in verdict), (refusal, verdict)


CASES = [
    (model, name, value, accepted)
    for model, entry in MODELS.items()
    for name, spec in entry.fields.items()
    for accepted, values in ((True, valid_values(spec)), (False, invalid_values(spec)))
    for value in values
]


def test_both_tables_know_the_same_models_fields_and_required_fields() -> None:
    assert set(MODELS) == set(MARKET_MODELS)
    for model, entry in MODELS.items():
        rules = MARKET_MODELS[model].fields
        assert list(entry.fields) == list(rules), model
        assert [n for n, spec in entry.fields.items() if spec.required] == [
            n for n, rule in rules.items() if rule.required
        ], model


def test_both_tables_count_images_and_choose_formats_alike() -> None:
    for model, entry in MODELS.items():
        rules = MARKET_MODELS[model]
        assert entry.format_field == rules.format_key, model
        for count in (None, *([] if isinstance(entry.images, int) else entry.fields[entry.images].enum)):
            given = {**baseline(model), **({entry.images: count} if count else {})}
            assert entry.image_count(given) == rules.count(given), (model, count)
        for fmt in [None, *entry.fields[entry.format_field].enum] if entry.format_field else [None]:
            given = {**baseline(model), **({entry.format_field: fmt} if fmt and entry.format_field else {})}
            assert entry.output_format(given) == rules.output_format(given), (model, fmt)


def test_both_tables_take_input_files_of_the_same_size() -> None:
    # the bundle refuses a larger upload or stored image before sending it; the platform, when it fetches
    from devstack.emulator.market_validation import Url, Urls

    for model, entry in MODELS.items():
        rules = MARKET_MODELS[model].fields
        ours = {name: spec.max_file_bytes for name, spec in entry.fields.items() if spec.holds_image_urls}
        theirs = {name: rule.mb * 1_048_576 for name, rule in rules.items() if isinstance(rule, Url | Urls)}
        assert ours == theirs, model


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_required_fields_alone_and_every_field_at_once_are_accepted_by_both(model: str) -> None:
    entry = MODELS[model]
    everything = {name: valid_values(spec)[-1] for name, spec in entry.fields.items()}
    for given in (baseline(model), everything):
        assert isinstance(validate_input(model, given), dict)
        assert_agree(model, given)


@pytest.mark.parametrize(
    ("model", "name", "value", "accepted"),
    CASES,
    ids=[f"{m}-{n}-{'ok' if a else 'bad'}{i}" for i, (m, n, _, a) in enumerate(CASES)],
)
def test_each_value_of_each_field_gets_the_same_verdict(
    model: str, name: str, value: Any, accepted: bool
) -> None:
    given = {**baseline(model), name: value}
    assert isinstance(validate_input(model, given), dict) is accepted
    assert_agree(model, given)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_unknown_and_missing_fields_are_refused_by_both(model: str) -> None:
    assert_agree(model, {**baseline(model), "not_a_field": "x"})
    for name in MODELS[model].required_fields:
        without = {k: v for k, v in baseline(model).items() if k != name}
        assert isinstance(validate_input(model, without), list)
        assert_agree(model, without)
        assert_agree(model, {**without, name: None})


@st.composite
def mixed_inputs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A model and an input whose fields are each absent, valid or invalid, plus maybe a stray field."""
    model = draw(st.sampled_from(sorted(MODELS)))
    given: dict[str, Any] = {}
    for name, spec in MODELS[model].fields.items():
        pick = draw(st.sampled_from(["absent", "valid", "valid", "valid", "invalid"]))
        if pick != "absent":
            given[name] = draw(
                st.sampled_from(valid_values(spec) if pick == "valid" else invalid_values(spec))
            )
    if draw(st.booleans()) and draw(st.booleans()):
        given["stray"] = draw(st.sampled_from(WRONG_KINDS))
    return model, given


@fuzz_settings(max_examples=600)
@hypothesis.given(mixed_inputs())
def test_random_mixtures_get_the_same_verdict_from_both(case: tuple[str, dict[str, Any]]) -> None:
    assert_agree(*case)


# ---------------------------------------------------------------------------------------- over HTTP
def test_over_http_the_emulator_takes_what_the_registry_takes_and_refuses_what_it_refuses(emulator) -> None:
    server = emulator(generation_seconds=600, generate_rate_limit=0)
    with api(server) as client:
        for model, entry in MODELS.items():
            everything = validate_input(model, {n: valid_values(s)[-1] for n, s in entry.fields.items()})
            assert isinstance(everything, dict)
            accepted = client.post(CREATE_TASK, json={"model": model, "input": everything})
            bad_name, bad_spec = next(iter(entry.fields.items()))
            bad = {**baseline(model), bad_name: invalid_values(bad_spec)[-1]}
            problems = validate_input(model, bad)
            refused = client.post(CREATE_TASK, json={"model": model, "input": bad})
            assert accepted.status_code == refused.status_code == 200
            assert accepted.json()["code"] == 200, (model, accepted.json())
            assert isinstance(problems, list) and refused.json()["code"] == 422, (model, refused.json())
            assert refused.json()["msg"].startswith(problems[0].field)
