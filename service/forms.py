"""HTML forms generated from an action's payload: the JSON schema of its command
(`domain.lifecycle.payload_schema`, as `allowed_actions` hands it out), and back.

- `action_form(action, schema, lang, ...)`: one field per property, its widget from the
  schema: an enum is a select with Chinese labels, an integer a number input (with the
  schema's bounds), a decimal a number input in cents, a date-time a `datetime-local` input
  (Beijing time), a string a text input or a textarea by its maximum length, a boolean a
  checkbox, a list one item per line (or a multiple select when the page offers choices).
  A field the page offers choices for (a unit, a person) is a select of names, not a code
  to type.
- `body_from_form(schema, form)`: the submitted form as the action's JSON body, typed
  as the schema says; whatever does not parse is passed on as typed, so the command's own
  validation names the field.
- `field_errors(errors, schema, lang)`: a validation problem's errors as one plain
  sentence per field; `refusal_message(rule, field, details, lang)`: a refusal in words.

Nothing here shows a schema's English or an enum's value to a person.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.models import Action
from service import i18n
from service.i18n import N_

# ------------------------------------------------------------------- the words

ACTION_NAMES: dict[Action, str] = {
    Action.ACCEPT: N_("受理"),
    Action.DECLINE: N_("不予受理"),
    Action.DIVERT: N_("引导至其他法定途径"),
    Action.TRANSFER: N_("转送或交办"),
    Action.REJECT_TRANSFER: N_("退回转送"),
    Action.ASSIGN: N_("指定承办人员"),
    Action.CONTRACT_TO_LEADER: N_("领导包案"),
    Action.REQUEST_EXTENSION: N_("申请延长办理期限"),
    Action.DECIDE_EXTENSION: N_("审批延期申请"),
    Action.SCHEDULE_HEARING: N_("安排听证"),
    Action.RECORD_HEARING: N_("记录听证结果"),
    Action.REQUEST_ASSISTANCE: N_("申请救助"),
    Action.DECIDE_ASSISTANCE: N_("审批救助"),
    Action.PROGRESS_REPLY: N_("答复办理进展"),
    Action.REPLY: N_("出具处理意见"),
    Action.RATE: N_("满意度评价"),
    Action.REQUEST_REVIEW: N_("请求复查"),
    Action.REVIEW_OPINION: N_("出具复查意见"),
    Action.REQUEST_RE_REVIEW: N_("请求复核"),
    Action.RE_REVIEW_OPINION: N_("出具复核意见"),
    Action.WITHDRAW: N_("撤回信访事项"),
    Action.ADD_NOTE: N_("补充材料"),
    Action.REPEAT_VISIT: N_("登记重复来访"),
    Action.REGISTER: N_("登记"),
    Action.DECLINE_CONCLUDED: N_("已终结事项不予受理"),
    Action.REVIEW_WINDOW_LAPSED: N_("复查请求期限届满"),
    Action.RE_REVIEW_WINDOW_LAPSED: N_("复核请求期限届满"),
}

# A field's label; an action may name its field more exactly.
FIELD_LABELS: dict[str, str] = {
    "note": N_("备注"),
    "reason": N_("理由"),
    "explanation": N_("说明"),
    "concluded_case": N_("已终结信访事项编号"),
    "track": N_("引导途径"),
    "organ": N_("有权处理的机关"),
    "to_unit": N_("转送或交办至"),
    "instructions": N_("转送或交办要求"),
    "assigned": N_("交办（要求报告办理结果）"),
    "handler_id": N_("承办人员"),
    "leader_id": N_("包案领导"),
    "days": N_("延期天数"),
    "approved": N_("批准"),
    "reason_to_petitioner": N_("告知信访人的延期理由"),
    "venue": N_("听证地点"),
    "starts_at": N_("听证开始时间（北京时间）"),
    "duration_minutes": N_("听证时长（分钟）"),
    "officers": N_("听证员"),
    "hearing_no": N_("听证编号"),
    "outcome": N_("听证结论"),
    "summary": N_("情况摘要"),
    "kind": N_("救助类型"),
    "amount_yuan": N_("金额（元）"),
    "persons": N_("救助人数"),
    "application_no": N_("救助申请编号"),
    "exception_approved": N_("批准超出救助上限的例外"),
    "text": N_("内容"),
    "opinion": N_("意见"),
    "supported": N_("支持信访人的诉求"),
    "satisfaction": N_("满意度"),
    "comment": N_("评价意见"),
    "review_organ": N_("复查机关"),
    "re_review_organ": N_("复核机关"),
    "upheld": N_("维持原意见"),
    "channel": N_("来访渠道"),
}
ACTION_FIELD_LABELS: dict[tuple[Action, str], str] = {
    (Action.ACCEPT, "note"): N_("受理备注"),
    (Action.DECLINE, "reason"): N_("不予受理的法定理由"),
    (Action.REJECT_TRANSFER, "reason"): N_("退回理由"),
    (Action.REQUEST_EXTENSION, "reason"): N_("申请延期的理由"),
    (Action.REQUEST_ASSISTANCE, "reason"): N_("申请救助的理由"),
    (Action.DECIDE_ASSISTANCE, "reason"): N_("审批意见"),
    (Action.DECIDE_ASSISTANCE, "amount_yuan"): N_("批准金额（元，不填为申请金额）"),
    (Action.DECIDE_EXTENSION, "days"): N_("批准天数（不填为申请天数）"),
    (Action.DECIDE_EXTENSION, "approved"): N_("批准延期"),
    (Action.RECORD_HEARING, "summary"): N_("听证情况摘要"),
    (Action.PROGRESS_REPLY, "text"): N_("答复内容"),
    (Action.ADD_NOTE, "text"): N_("补充材料内容"),
    (Action.REPLY, "opinion"): N_("处理意见"),
    (Action.REVIEW_OPINION, "opinion"): N_("复查意见"),
    (Action.RE_REVIEW_OPINION, "opinion"): N_("复核意见"),
    (Action.REQUEST_REVIEW, "reason"): N_("请求复查的理由"),
    (Action.REQUEST_RE_REVIEW, "reason"): N_("请求复核的理由"),
    (Action.WITHDRAW, "reason"): N_("撤回理由"),
    (Action.REPEAT_VISIT, "summary"): N_("来访情况摘要"),
}

# An enum's values in words, by the schema's name of the enum.
ENUM_LABELS: dict[str, dict[str, str]] = {
    "DeclineReason": {
        "repeated_within_time_limit": N_("重复信访，仍在办理期限内"),
        "concluded_after_re_review": N_("已经复核终结的同一事项"),
        "cross_level_visit": N_("越级走访"),
        "outside_petition_scope": N_("不属于信访事项受理范围"),
    },
    "DivertTrack": {
        "litigation": N_("诉讼"),
        "arbitration": N_("仲裁"),
        "administrative_review": N_("行政复议"),
        "discipline_inspection": N_("纪检监察"),
        "other_statutory_procedure": N_("其他法定程序"),
    },
    "Satisfaction": {
        "satisfied": N_("满意"),
        "basically_satisfied": N_("基本满意"),
        "unsatisfied": N_("不满意"),
    },
    "HearingOutcome": {
        "supported": N_("支持"),
        "partly_supported": N_("部分支持"),
        "not_supported": N_("不支持"),
        "adjourned": N_("休会，另行听证"),
    },
    "AssistanceKind": {
        "judicial": N_("司法救助"),
        "hardship": N_("困难救助"),
    },
    "Channel": {
        "visit": N_("来访"),
        "letter": N_("来信"),
        "hotline_12345": N_("12345热线"),
        "hotline_12309": N_("12309检察服务热线"),
        "hotline_12368": N_("12368诉讼服务热线"),
        "online": N_("网上信访"),
        "video": N_("视频接访"),
    },
}

CHOOSE = N_("请选择")
ONE_PER_LINE = N_("每行填写一项")
BEIJING_TIME = N_("北京时间")
RANGE = N_("可填 {min}–{max}")
TEXT_INPUT_CHARS = 100  # longer strings get a textarea
LONG_TEXT_CHARS = 500  # longer still: a large one


@dataclass
class Option:
    value: str
    label: str
    selected: bool = False


@dataclass
class FormField:
    name: str
    label: str
    widget: str  # select, multiselect, number, datetime, date, text, textarea, checkbox, lines
    required: bool
    value: str = ""
    options: list[Option] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)  # min, max, step, maxlength, rows
    hint: str = ""
    error: str = ""

    @property
    def id(self) -> str:
        return self.name.replace("_", "-")


@dataclass
class ActionForm:
    action: Action
    title: str
    fields: list[FormField]
    article: str = ""
    token: str = ""
    error: str = ""  # a refusal of the whole action, in words
    open: bool = False  # shown unfolded (it was just submitted)

    @property
    def id(self) -> str:
        return f"action-{self.action.value.replace('_', '-')}"


# ------------------------------------------------------------------- the schema


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A property without its nullable wrapper and `$ref`: (the schema, the enum's name)."""
    options = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
    if len(options) == 1:
        prop = {**prop, **options[0]}
        prop.pop("anyOf", None)
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        return {**schema.get("$defs", {}).get(name, {}), **prop}, name
    return prop, None


def narrowed(schema: dict[str, Any], limits: Mapping[str, Mapping[str, Any]]
             ) -> dict[str, Any]:
    """`schema` with tighter bounds on some fields (`{"days": {"maximum": 30}}`: the case's
    profile allows 30 days where the command allows 366), so the form's range, its hint
    and its error sentences all say the bound that applies."""
    properties = dict(schema.get("properties", {}))
    for name, bounds in limits.items():
        if name not in properties:
            continue
        prop = dict(properties[name])
        if "anyOf" in prop:
            prop["anyOf"] = [{**p, **bounds} if p.get("type") != "null" else p
                             for p in prop["anyOf"]]
        else:
            prop.update(bounds)
        properties[name] = prop
    return {**schema, "properties": properties}


def _is_decimal(prop: dict[str, Any]) -> bool:
    kinds = {p.get("type") for p in prop.get("anyOf", [])}
    return {"number", "string"} <= kinds


def field_kind(schema: dict[str, Any], name: str) -> str:
    """The widget a property gets (without choices offered by the page)."""
    prop, _enum = _resolve(schema, schema["properties"][name])
    if "enum" in prop:
        return "select"
    kind = prop.get("type")
    if _is_decimal(prop) or kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "checkbox"
    if kind == "array":
        return "lines"
    if prop.get("format") == "date-time":
        return "datetime"
    if prop.get("format") == "date":
        return "date"
    if "pattern" in prop or int(prop.get("maxLength", LONG_TEXT_CHARS)) <= TEXT_INPUT_CHARS:
        return "text"
    return "textarea"


def label_for(action: Action, name: str, prop: dict[str, Any], lang: str) -> str:
    label = ACTION_FIELD_LABELS.get((action, name)) or FIELD_LABELS.get(name)
    if label is None:  # a field without a label of ours: the schema's title
        return str(prop.get("title") or name)
    return i18n.gettext(lang, label)


def _number_attrs(prop: dict[str, Any]) -> dict[str, str]:
    if _is_decimal(prop):
        return {"min": "0.01", "step": "0.01", "inputmode": "decimal"}
    attrs = {"step": "1", "inputmode": "numeric"}
    if "minimum" in prop:
        attrs["min"] = str(prop["minimum"])
    if "maximum" in prop:
        attrs["max"] = str(prop["maximum"])
    return attrs


def _default(prop: dict[str, Any]) -> str:
    value = prop.get("default")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)


def build_field(action: Action, schema: dict[str, Any], name: str, lang: str, *,
                choices: Sequence[tuple[str, str]] | None = None,
                value: str | list[str] | None = None, error: str = "") -> FormField:
    raw = schema["properties"][name]
    prop, enum_name = _resolve(schema, raw)
    required = name in schema.get("required", [])
    widget = field_kind(schema, name)
    shown = value if value is not None else _default(prop)
    chosen = set(shown) if isinstance(shown, list) else {shown}
    made = FormField(name=name, label=label_for(action, name, prop, lang), widget=widget,
                     required=required, error=error,
                     value=shown if isinstance(shown, str) else "\n".join(shown))
    if choices is not None or widget == "select":
        if choices is None:
            words = ENUM_LABELS.get(enum_name or "", {})
            choices = [(v, i18n.gettext(lang, words[v]) if v in words else str(v))
                       for v in prop.get("enum", [])]
        made.widget = "multiselect" if widget == "lines" else "select"
        made.options = [Option(v, label, v in chosen) for v, label in choices]
        if made.widget == "select" and (not required or not made.value):
            made.options.insert(0, Option("", i18n.gettext(lang, CHOOSE), not made.value))
        if made.widget == "multiselect":
            made.attrs["size"] = str(min(8, max(3, len(made.options))))
    elif widget == "number":
        made.attrs = _number_attrs(prop)
    elif widget in ("text", "textarea"):
        if "maxLength" in prop:
            made.attrs["maxlength"] = str(prop["maxLength"])
        if widget == "textarea":
            made.attrs["rows"] = "8" if int(prop.get("maxLength", 0)) > LONG_TEXT_CHARS else "3"
    elif widget == "lines":
        made.attrs["rows"] = "3"
        made.hint = i18n.gettext(lang, ONE_PER_LINE)
    elif widget == "datetime":
        made.hint = i18n.gettext(lang, BEIJING_TIME)
    if widget == "number" and "maximum" in prop and "minimum" in prop:
        made.hint = i18n.gettext(lang, RANGE).format(min=prop["minimum"], max=prop["maximum"])
    return made


def action_form(action: Action, schema: dict[str, Any], lang: str, *,
                choices: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                values: Mapping[str, str | list[str]] | None = None,
                errors: Mapping[str, str] | None = None, article: str = "",
                token: str = "", error: str = "") -> ActionForm:
    """The form of one action, its fields in the schema's order."""
    choices, values, errors = choices or {}, values or {}, errors or {}
    fields = [build_field(action, schema, name, lang, choices=choices.get(name),
                          value=values.get(name), error=errors.get(name, ""))
              for name in schema.get("properties", {})]
    return ActionForm(action=action, title=i18n.gettext(lang, ACTION_NAMES[action]),
                      fields=fields, article=article, token=token, error=error,
                      open=bool(errors or error))


# ------------------------------------------------------------------- form -> body

_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")
_LOCAL_MINUTE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")
TRUE_VALUES = frozenset({"on", "true", "1", "yes"})


def form_values(form: Any, schema: dict[str, Any]) -> dict[str, str | list[str]]:
    """The schema's fields of a submitted form (starlette's FormData or a dict of lists),
    as typed: to show them again."""
    values: dict[str, str | list[str]] = {}
    for name in schema.get("properties", {}):
        got = _getlist(form, name)
        kind = field_kind(schema, name)
        if kind == "lines" and len(got) > 1:  # a multiple select
            values[name] = got
        else:
            values[name] = got[0] if got else ""
    return values


def _getlist(form: Any, name: str) -> list[str]:
    if hasattr(form, "getlist"):
        found = form.getlist(name)
    else:
        found = form.get(name, [])
        found = found if isinstance(found, list) else [found]
    return [str(v) for v in found if isinstance(v, str)]


def body_from_form(schema: dict[str, Any], form: Any) -> dict[str, Any]:
    """The action's JSON body from the submitted form. An empty optional field is left
    out (its default applies); a value that does not parse goes on as typed."""
    body: dict[str, Any] = {}
    for name in schema.get("properties", {}):
        got = [v.strip() for v in _getlist(form, name)]
        prop, _enum = _resolve(schema, schema["properties"][name])
        kind = field_kind(schema, name)
        if kind == "checkbox":
            body[name] = any(v.lower() in TRUE_VALUES for v in got)
            continue
        if kind == "lines":
            items = [line.strip() for v in got for line in v.splitlines()]
            items = [i for i in items if i]
            if items or name in schema.get("required", []):
                body[name] = items
            continue
        value = got[0] if got else ""
        if not value:
            continue
        if kind == "number" and prop.get("type") == "integer" and _INTEGER.match(value):
            body[name] = int(value)
        elif kind == "datetime" and _LOCAL_MINUTE.match(value):
            body[name] = value + (":00" if value.count(":") == 1 else "") + "+08:00"
        else:
            body[name] = value
    return body


# ------------------------------------------------------------------- errors in words

ERROR_WORDS: dict[str, str] = {
    "missing": N_("请填写此项。"),
    "string_too_short": N_("请填写此项。"),
    "string_too_long": N_("内容过长，最多 {max} 个字。"),
    "string_pattern_mismatch": N_("格式不正确，请从列表中选择或按要求填写。"),
    "int_parsing": N_("请填写整数。"),
    "int_type": N_("请填写整数。"),
    "int_from_float": N_("请填写整数。"),
    "less_than_equal": N_("不能大于 {max}。"),
    "less_than": N_("不能大于 {max}。"),
    "greater_than_equal": N_("不能小于 {min}。"),
    "greater_than": N_("必须大于 {min}。"),
    "decimal_parsing": N_("请填写金额，如 1200.50。"),
    "decimal_max_places": N_("金额最多两位小数。"),
    "decimal_max_digits": N_("金额过大。"),
    "datetime_parsing": N_("请填写完整的日期和时间。"),
    "datetime_from_date_parsing": N_("请填写完整的日期和时间。"),
    "date_parsing": N_("请填写日期。"),
    "enum": N_("请从列表中选择一项。"),
    "literal_error": N_("请从列表中选择一项。"),
    "bool_parsing": N_("请勾选或取消勾选。"),
    "too_short": N_("至少填写 {min} 项。"),
    "too_long": N_("最多填写 {max} 项。"),
    "extra_forbidden": N_("此项不可填写。"),
}
INVALID = N_("内容不符合要求，请检查后重新填写。")


def _bounds(prop: dict[str, Any]) -> dict[str, Any]:
    return {"max": prop.get("maximum", prop.get("maxLength", prop.get("maxItems", ""))),
            "min": prop.get("minimum", prop.get("exclusiveMinimum",
                                                 prop.get("minItems", "")))}


def field_errors(errors: Sequence[Mapping[str, Any]], schema: dict[str, Any],
                 lang: str) -> tuple[dict[str, str], list[str]]:
    """A validation problem's `errors` as one sentence per form field, and the sentences
    for errors of no field of the form (never the English message itself)."""
    by_field: dict[str, str] = {}
    other: list[str] = []
    properties = schema.get("properties", {})
    for error in errors:
        name = str(error.get("field", "")).split(".", 1)[0]
        kind = str(error.get("type", ""))
        words = i18n.gettext(lang, ERROR_WORDS.get(kind, INVALID))
        if name in properties:
            prop, _enum = _resolve(schema, properties[name])
            words = words.format(**_bounds(prop))
            by_field.setdefault(name, words)
        else:
            other.append(words.format(max="", min=""))
    return by_field, other


# ------------------------------------------------------------------- refusals in words

REFUSAL_WORDS: dict[str, str] = {
    "stage": N_("案件当前所处阶段不能进行此项操作。"),
    "role": N_("您的岗位不能进行此项操作。"),
    "unit": N_("此项操作应由案件的承办单位或有权机关进行，您所在单位不能进行。"),
    "case": N_("您无权查看或办理此信访事项。"),
    "closed": N_("该信访事项已办结，不能再进行操作。"),
    "transfer_objection": N_("没有可以退回的转送，或退回期限已过。"),
    "transfer": N_("不能转送给当前正在办理该事项的单位，请选择其他单位。"),
    "divert": N_("所选单位不是有权处理该事项的机关，请另选。"),
    "directory": N_("所选单位不在单位名录中。"),
    "extension": N_("当前没有可以延期的办理期限或待审批的延期申请。"),
    "extension:pending": N_("已有延期申请在等待单位负责人审批。"),
    "extension:once": N_("办理期限只能延长一次，本案已经延期。"),
    "extension:max": N_("延期不能超过 {max_days} 日。"),
    "hearing": N_("听证安排未被接受：时间、地点或听证员有冲突，或听证编号不正确。"),
    "assistance": N_("没有待审批的救助申请，或申请编号不正确。"),
    "assistance:amount": N_("批准金额不能超过申请金额（{requested_yuan} 元）。"),
    "assistance:exception": N_("只有领导可以批准超出救助上限的例外。"),
    "assistance:cap": N_("金额超过救助上限（{cap_yuan} 元），需经领导批准例外。"),
    "assistance:leader": N_("金额超过 {leader_threshold_yuan} 元，须由领导审批。"),
    "decline:concluded": N_("以“已经复核终结”为由不予受理时，须填写已终结信访事项编号。"),
    "review:organ": N_("复查应由原办理单位的上一级机关进行，请选择正确的复查机关。"),
    "re_review:organ": N_("复核应由复查机关的上一级机关进行，请选择正确的复核机关。"),
    "petitioner": N_("查询码只能查看本人的信访事项。"),
}
# The same refusals without their figures (an audit trail row keeps only the rule).
REFUSAL_PLAIN: dict[str, str] = {
    "extension:max": N_("延期天数超过规定的上限。"),
    "assistance:amount": N_("批准金额超过申请金额。"),
    "assistance:cap": N_("金额超过救助上限，需经领导批准例外。"),
    "assistance:leader": N_("金额超过限额，须由领导审批。"),
}
REFUSED = N_("此项操作未被接受，请核对后重试。")
# A refusal of the hearing's time: its earliest free slot, when the booking found one.
HEARING_SLOT = N_("该时间段已有安排或不在工作时间内。最早可安排的时间：{slot}。")


def refusal_message(rule: str, details: Mapping[str, Any], lang: str) -> str:
    """A refusal as a sentence for the person who acted (figures from its details)."""
    words = REFUSAL_WORDS.get(rule) or REFUSAL_WORDS.get(rule.split(":", 1)[0]) or REFUSED
    try:
        return i18n.gettext(lang, words).format(**details)
    except (KeyError, IndexError, ValueError):  # a figure the sentence needs is missing
        return i18n.gettext(lang, REFUSAL_PLAIN.get(rule, REFUSED))
