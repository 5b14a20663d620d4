"""The workbench's generated forms (service/forms.py): every person action of the lifecycle
table gets a form from its payload schema; valid form data comes back as a body its command
accepts; invalid data gives a plain sentence beside each field at fault; refusals are
words, never the domain's English."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from domain.lifecycle import TABLE, payload_schema
from domain.models import Action, Actor, RequestAssistance, Role
from service.forms import (
    ACTION_NAMES,
    ActionForm,
    FormField,
    action_form,
    body_from_form,
    field_errors,
    form_values,
    narrowed,
    refusal_message,
)
from service.problems import from_validation_error

PERSON_ACTIONS = [row.action for row in TABLE.values() if not row.system]
ACTOR = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="QS-HRSS")
CHOICES = {"to_unit": [("QS-HRSS", "青山县人力资源和社会保障局"), ("QS-XFJ", "青山县信访局")],
           "officers": [("QS-HO1", "听证员甲"), ("QS-HO2", "听证员乙")]}
CHINESE = range(0x4E00, 0xA000)


def _chinese(text: str) -> bool:
    return any(ord(ch) in CHINESE for ch in text)


def _valid_value(f: FormField) -> str | list[str]:
    """What a person would type or pick in this field."""
    if f.widget in ("select", "multiselect"):
        picked = [o.value for o in f.options if o.value]
        return picked[:1] if f.widget == "multiselect" else picked[0]
    if f.widget == "number":
        return f.attrs.get("min", "1") if "." not in f.attrs.get("step", "1") else "1200.50"
    if f.widget == "checkbox":
        return "on"
    if f.widget == "datetime":
        return "2030-05-06T09:30"
    if f.widget == "date":
        return "2030-05-06"
    if f.widget == "lines":
        return "QS-HO1\nQS-HO2"
    if f.attrs.get("maxlength") is None:  # a code (a unit or person typed by id)
        return "QS-XFJ"
    return "经核实，情况属实。"


def _form(action: Action, lang: str = "zh", **kwargs: Any) -> ActionForm:
    return action_form(action, payload_schema(TABLE[action].command), lang,
                       choices=CHOICES, **kwargs)


@pytest.mark.parametrize("action", PERSON_ACTIONS, ids=lambda a: a.value)
def test_every_person_action_has_a_form_whose_data_its_command_accepts(action: Action) -> None:
    form = _form(action)
    schema = payload_schema(TABLE[action].command)
    assert form.title == ACTION_NAMES[action] and _chinese(form.title)
    assert [f.name for f in form.fields] == list(schema["properties"])
    for f in form.fields:
        assert _chinese(f.label), (action, f.name, f.label)  # a label of ours, not the title
        for option in f.options:
            assert option.value == "" or _chinese(option.label) or option.label[0].isdigit(), \
                (action, f.name, option)
    submitted = {f.name: _valid_value(f) for f in form.fields}
    body = body_from_form(schema, {k: v if isinstance(v, list) else [v]
                                   for k, v in submitted.items()})
    command = TABLE[action].command.model_validate({**body, "actor": ACTOR})
    assert command.actor == ACTOR
    # What was submitted shows again as typed.
    shown = form_values({k: v if isinstance(v, list) else [v] for k, v in submitted.items()},
                        schema)
    assert set(shown) == set(schema["properties"])


def test_widgets_follow_the_schema() -> None:
    by_name = {f.name: f for f in _form(Action.SCHEDULE_HEARING).fields}
    assert by_name["venue"].widget == "textarea"
    assert by_name["starts_at"].widget == "datetime"
    assert by_name["duration_minutes"].widget == "number"
    assert by_name["duration_minutes"].attrs["min"] == "15"
    assert by_name["duration_minutes"].attrs["max"] == "480"
    assert by_name["duration_minutes"].value == "120"  # the schema's default
    assert by_name["officers"].widget == "multiselect"
    extension = {f.name: f for f in _form(Action.REQUEST_EXTENSION).fields}
    assert extension["days"].widget == "number" and extension["days"].required
    assert extension["days"].attrs["max"] == "366"
    decline = {f.name: f for f in _form(Action.DECLINE).fields}
    assert decline["reason"].widget == "select"
    assert "越级走访" in [o.label for o in decline["reason"].options]
    assert decline["reason"].options[0].value == ""  # 请选择, nothing chosen for them
    reply = {f.name: f for f in _form(Action.REPLY).fields}
    assert reply["opinion"].widget == "textarea" and reply["opinion"].attrs["rows"] == "8"
    assert reply["supported"].widget == "checkbox" and reply["supported"].value == "on"
    assistance = {f.name: f for f in _form(Action.REQUEST_ASSISTANCE).fields}
    assert assistance["amount_yuan"].attrs["step"] == "0.01"
    # Without choices from the page, a unit is typed.
    bare = action_form(Action.TRANSFER, payload_schema(TABLE[Action.TRANSFER].command), "zh")
    assert {f.name: f.widget for f in bare.fields}["to_unit"] == "text"
    # The same form in English.
    english = {f.name: f for f in _form(Action.REQUEST_EXTENSION, lang="en").fields}
    assert english["days"].label == "Days of extension"


def test_form_data_becomes_a_typed_body() -> None:
    schema = payload_schema(TABLE[Action.SCHEDULE_HEARING].command)
    body = body_from_form(schema, {"venue": ["  第一听证室 "], "starts_at": ["2030-05-06T09:30"],
                                   "duration_minutes": ["90"], "officers": ["QS-HO1", "QS-HO2"],
                                   "csrf_token": ["x"]})
    assert body == {"venue": "第一听证室", "starts_at": "2030-05-06T09:30:00+08:00",
                    "duration_minutes": 90, "officers": ["QS-HO1", "QS-HO2"]}
    # A checkbox not ticked is false; an empty optional field is left to its default.
    transfer = payload_schema(TABLE[Action.TRANSFER].command)
    assert body_from_form(transfer, {"to_unit": ["QS-XFJ"], "instructions": [""]}) == \
        {"to_unit": "QS-XFJ", "assigned": False}
    assistance = payload_schema(TABLE[Action.REQUEST_ASSISTANCE].command)
    body = body_from_form(assistance, {"kind": ["hardship"], "amount_yuan": ["1200.50"],
                                       "reason": ["生活困难"]})
    command = RequestAssistance.model_validate({**body, "actor": ACTOR})
    assert command.amount_yuan == Decimal("1200.50")


def _errors(action: Action, form: dict[str, list[str]], lang: str = "zh"
            ) -> dict[str, str]:
    schema = payload_schema(TABLE[action].command)
    body = body_from_form(schema, form)
    with pytest.raises(ValidationError) as invalid:
        TABLE[action].command.model_validate({**body, "actor": ACTOR})
    problem = from_validation_error(invalid.value)  # what take_action raises
    by_field, other = field_errors(problem.extra["errors"], schema, lang)
    assert not other
    return by_field


def test_invalid_input_gives_a_sentence_beside_each_field() -> None:
    errors = _errors(Action.REQUEST_EXTENSION, {"days": ["400"], "reason": [""]})
    assert errors == {"days": "不能大于 366。", "reason": "请填写此项。"}
    errors = _errors(Action.REQUEST_EXTENSION, {"days": ["三十"], "reason": ["材料未齐"]})
    assert errors == {"days": "请填写整数。"}
    errors = _errors(Action.SCHEDULE_HEARING, {"venue": ["第一听证室"], "starts_at": ["明天"],
                                               "duration_minutes": ["5"]})
    assert errors["starts_at"] == "请填写完整的日期和时间。"
    assert errors["duration_minutes"] == "不能小于 15。"
    assert errors["officers"] == "至少填写 1 项。"
    errors = _errors(Action.DECLINE, {"reason": ["because"], "explanation": ["x" * 501]})
    assert errors == {"reason": "请从列表中选择一项。", "explanation": "内容过长，最多 500 个字。"}
    english = _errors(Action.REQUEST_EXTENSION, {"days": ["400"], "reason": ["x"]}, lang="en")
    assert english == {"days": "At most 366."}


def test_refusals_are_sentences_not_the_domains_english() -> None:
    assert refusal_message("extension:max", {"max_days": 30}, "zh") == "延期不能超过 30 日。"
    assert refusal_message("unit:holding", {}, "zh").startswith("此项操作应由案件的承办单位")
    # Without its figures (an audit trail row), the sentence that needs none.
    assert refusal_message("extension:max", {}, "zh") == "延期天数超过规定的上限。"
    assert refusal_message("something:new", {}, "zh") == "此项操作未被接受，请核对后重试。"
    assert refusal_message("stage", {}, "en") == \
        "The case's current stage does not allow this action."


def test_a_profile_narrows_a_bound_in_the_form_and_in_its_errors() -> None:
    for action in (Action.REQUEST_EXTENSION, Action.DECIDE_EXTENSION):
        schema = narrowed(payload_schema(TABLE[action].command), {"days": {"maximum": 30}})
        days = {f.name: f for f in action_form(action, schema, "zh").fields}["days"]
        assert days.attrs["max"] == "30" and days.hint == "可填 1–30"
    schema = narrowed(payload_schema(TABLE[Action.REQUEST_EXTENSION].command),
                      {"days": {"maximum": 30}, "nothing": {"maximum": 1}})
    problem = {"field": "days", "type": "less_than_equal", "message": "..."}
    assert field_errors([problem], schema, "zh") == ({"days": "不能大于 30。"}, [])
    # The command itself is untouched: the domain's rule still decides.
    assert payload_schema(TABLE[Action.REQUEST_EXTENSION].command)["properties"]["days"][
        "maximum"] == 366
