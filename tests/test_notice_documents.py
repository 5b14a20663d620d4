"""Issue 14: the written notices (书面告知) as documents. Each kind of notice rendered for a
real case walked through the domain core (no Temporal): the letter's PDF read back with a
PDF text tool (pypdfium2) holds the unit's name, the decision, the article, the dates in
Beijing time and the query code, and nothing technical; the first page of each is saved as
a picture under test-output/notices/ (look at them: Chinese, not boxes). The SMS and the
e-mail are checked too, and every notice the lifecycle table sends the petitioner has its
templates."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.directory import read_directory
from documents.fonts import cjk_font_problem
from documents.render import (
    SMS_MAX_CHARS,
    TEMPLATES,
    NoticeRenderError,
    RenderContext,
    RenderedNotice,
    article_zh,
    beijing_date,
    chinese_name,
    render_notice,
    template_names,
)
from domain import projections, transition
from domain.calendar import WorkingCalendar
from domain.case import CaseState, EffectResults, UnitFacts, open_case
from domain.lifecycle import REGISTRATION, TABLE, TRANSITIONS, Effect
from domain.models import (
    SYSTEM_ACTOR,
    Action,
    Actor,
    Command,
    DeclineConcluded,
    PetitionIntake,
    Role,
)
from domain.notice_facts import ACTION_KINDS, NoticeFacts, NoticeKind, facts_for
from domain.policy import load_profile
from security.query_code import QUERY_CODE_ALPHABET, QueryCodes

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "notices"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkingCalendar()
# 02:00 on 2 March in Beijing, still 1 March in UTC: a date printed in UTC shows.
T0 = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TRACK_URL = "https://xf.example.gov.cn/track"
CODES = QueryCodes(bytes(range(32)))


@cache
def directory_units() -> dict[str, UnitFacts]:
    directory = read_directory(ROOT / "domain" / "directory" / "sample.toml")
    fields = set(UnitFacts.model_fields)
    return {u.code: UnitFacts(**u.model_dump(include=fields)) for u in directory.units}


def unit_names() -> dict[str, str]:
    """Code -> name, as the directory holds it (Chinese, then English)."""
    return {code: facts.name for code, facts in directory_units().items()}


def zh(code: str) -> str:
    return chinese_name(unit_names()[code])


def staff(unit: str, role: Role = Role.HANDLER) -> Actor:
    return Actor(id=f"{unit}.{'head' if role is Role.UNIT_HEAD else 'h1'}", role=role,
                 unit=unit)


PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="public")


def new_case(unit: str = "QS-HRSS", concluded_case: str | None = None) -> CaseState:
    intake = PetitionIntake.model_validate({
        "intake_id": "T-notice-0001", "channel": "visit", "category": "wage_arrears",
        "unit": unit, "received_at": T0.isoformat(), "subject": "拖欠工资",
        "content": "某公司拖欠工资三个月", "petitioner": {
            "name": "李明", "id_number": "11010519491231002X"}})
    case = open_case(workflow_id="petition-T-notice-0001", petition_id=1,
                     registration_no="QS-2026-000123", profile=load_profile("national"),
                     intake=intake, unit=directory_units()[unit],
                     concluded_case=concluded_case)
    transition.register(case, Actor(id="intake-visit", role=Role.INTAKE_CLERK, unit=unit),
                        T0, CALENDAR)
    return case


@dataclass
class Walk:
    """A case walked through the table; `notices` are what the last step sends."""

    case: CaseState
    at: datetime = T0
    notices: list[projections.Notice] = field(default_factory=list)

    def act(self, action: Action, actor: Actor, results: EffectResults | None = None,
            after: timedelta = DAY, **payload: Any) -> Walk:
        row = TABLE[action]
        command = row.command.model_validate({**payload, "actor": actor})
        refusal = transition.refusal(self.case, row, command)
        assert refusal is None, refusal
        self.at += after
        transition.take(self.case, row, command, self.at, results or EffectResults(),
                        CALENDAR)
        self.notices = projections.notices_of(row, command, self.case)
        self.command = command
        return self

    def petitioner_facts(self) -> NoticeFacts:
        [notice] = [n for n in self.notices if n.recipient_kind == "petitioner"]
        assert notice.facts is not None
        return notice.facts


def learn(*codes: str) -> EffectResults:
    return EffectResults(units=[directory_units()[c] for c in codes], order_no="WO-1")


def in_handling() -> Walk:
    return Walk(new_case()).act(Action.ACCEPT, staff("QS-HRSS"))


def replied() -> Walk:
    return in_handling().act(Action.REPLY, staff("QS-HRSS"), after=20 * DAY,
                             opinion="经调查核实，某公司拖欠您工资三个月属实。本局已责令其于"
                                     "2026年4月10日前足额支付。")


def review_replied() -> Walk:
    walk = replied().act(Action.REQUEST_REVIEW, PETITIONER, learn("YZ-HRSS"),
                         review_organ="YZ-HRSS", reason="对处理意见不服")
    return walk.act(Action.REVIEW_OPINION, staff("YZ-HRSS"), after=10 * DAY,
                    opinion="经复查，原处理意见认定事实清楚，适用依据正确，予以维持。")


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Expected:
    """What the letter of one kind must say besides the common facts."""

    phrases: tuple[str, ...]
    issuer: str  # unit code: its name must head the letter
    articles: tuple[str, ...]


def registration() -> NoticeFacts:
    case = new_case("QS-XFJ")
    notice = projections.notice(case, "petitioner", case.registration_no, Action.REGISTER)
    assert notice.facts is not None
    return notice.facts


def acceptance() -> NoticeFacts:
    return in_handling().petitioner_facts()


def non_acceptance() -> NoticeFacts:
    return Walk(new_case()).act(
        Action.DECLINE, staff("QS-HRSS"), reason="outside_petition_scope",
        explanation="您反映的劳动合同纠纷应当通过劳动争议仲裁解决。").petitioner_facts()


def non_acceptance_concluded() -> NoticeFacts:
    walk = Walk(new_case(concluded_case="QS-2025-000077"))
    return walk.act(Action.DECLINE_CONCLUDED, SYSTEM_ACTOR,
                    concluded_case="QS-2025-000077").petitioner_facts()


def diversion() -> NoticeFacts:
    return Walk(new_case()).act(
        Action.DIVERT, staff("QS-HRSS"), learn("QS-COURT"), track="litigation",
        organ="QS-COURT", explanation="您与用人单位之间的工资争议已进入诉讼程序。"
    ).petitioner_facts()


def transfer() -> NoticeFacts:
    return Walk(new_case("QS-XFJ")).act(Action.TRANSFER, staff("QS-XFJ"), learn("QS-HRSS"),
                                        to_unit="QS-HRSS").petitioner_facts()


def assignment() -> NoticeFacts:
    return Walk(new_case("QS-XFJ")).act(Action.TRANSFER, staff("QS-XFJ"), learn("QS-HRSS"),
                                        to_unit="QS-HRSS", assigned=True).petitioner_facts()


def extension() -> NoticeFacts:
    walk = in_handling().act(Action.REQUEST_EXTENSION, staff("QS-HRSS"), after=40 * DAY,
                             days=30, reason="需调取社保缴费记录")
    return walk.act(Action.DECIDE_EXTENSION, staff("QS-HRSS", Role.UNIT_HEAD), approved=True,
                    reason_to_petitioner="涉及多名职工的工资和社保核算，需要调取外地缴费记录"
                    ).petitioner_facts()


def hearing() -> NoticeFacts:
    walk = in_handling().act(
        Action.SCHEDULE_HEARING, staff("QS-HRSS"), EffectResults(hearing_no=1),
        venue="青山县人社局三楼听证室", starts_at="2026-03-20T01:30:00Z",
        officers=["QS-HRSS.h2", "QS-XFJ.h3", "QS-XFJ.h4"])
    # The hearing booking sends its own notice to the parties (activities/hearings.py);
    # its facts are the same function's.
    facts = facts_for(walk.case, Action.SCHEDULE_HEARING, walk.command)
    assert facts is not None
    return facts


def assistance() -> NoticeFacts:
    walk = in_handling().act(Action.REQUEST_ASSISTANCE, staff("QS-HRSS"),
                             EffectResults(application_no=1), kind="hardship",
                             amount_yuan="8000", reason="因欠薪生活困难")
    return walk.act(Action.DECIDE_ASSISTANCE, staff("QS-HRSS", Role.UNIT_HEAD),
                    EffectResults(approved_amount_yuan=Decimal("6500")), application_no=1,
                    approved=True, amount_yuan="6500",
                    reason="符合困难群众救助条件").petitioner_facts()


def progress() -> NoticeFacts:
    return in_handling().act(Action.PROGRESS_REPLY, staff("QS-HRSS"),
                             text="已约谈用人单位负责人，正在核对工资台账。").petitioner_facts()


def handling_opinion() -> NoticeFacts:
    return replied().petitioner_facts()


def review_opinion() -> NoticeFacts:
    return review_replied().petitioner_facts()


def re_review_opinion() -> NoticeFacts:
    walk = review_replied().act(Action.REQUEST_RE_REVIEW, PETITIONER, learn("PROV-XFJ"),
                                re_review_organ="PROV-XFJ", reason="对复查意见不服")
    return walk.act(Action.RE_REVIEW_OPINION, staff("PROV-XFJ"), after=15 * DAY,
                    opinion="经复核，维持复查意见。").petitioner_facts()


def withdrawal() -> NoticeFacts:
    return in_handling().act(Action.WITHDRAW, PETITIONER,
                             reason="已与用人单位达成和解").petitioner_facts()


CASES: dict[str, tuple[Callable[[], NoticeFacts], Expected]] = {
    "registration": (registration, Expected(
        ("已于2026年3月2日登记",), "QS-XFJ", ("第二十二条",))),
    "acceptance": (acceptance, Expected(("决定予以受理",), "QS-HRSS", ("第二十三条",))),
    "non_acceptance": (non_acceptance, Expected(
        ("决定不予受理", "不属于信访事项的受理范围", "劳动争议仲裁"), "QS-HRSS",
        ("第二十三条",))),
    "non_acceptance_concluded": (non_acceptance_concluded, Expected(
        ("决定不予受理", "已经复核终结", "QS-2025-000077"), "QS-HRSS", ("第三十条",))),
    "diversion": (diversion, Expected(
        ("通过诉讼途径", "青山县人民法院", "已进入诉讼程序"), "QS-HRSS", ("第三十一条",))),
    "transfer": (transfer, Expected(
        ("转送青山县人力资源和社会保障局", "作出是否受理的决定"), "QS-XFJ",
        ("第二十二条", "第二十三条"))),
    "assignment": (assignment, Expected(
        ("交办青山县人力资源和社会保障局",), "QS-XFJ", ("第二十二条",))),
    "extension": (extension, Expected(
        ("办理期限延长30日", "调取外地缴费记录"), "QS-HRSS", ("第三十四条",))),
    "hearing": (hearing, Expected(
        ("2026年3月20日9时30分", "青山县人社局三楼听证室", "申请回避"), "QS-HRSS",
        ("第三十四条", "第三十六条"))),
    "assistance": (assistance, Expected(
        ("救助金人民币6,500元", "符合困难群众救助条件"), "QS-HRSS",
        ("《关于建立完善国家司法救助制度的意见（试行）》",))),
    "progress": (progress, Expected(
        ("正在核对工资台账",), "QS-HRSS", ("《人民检察院信访工作规定》",))),
    "handling_opinion": (handling_opinion, Expected(
        ("对您的诉求予以支持", "足额支付", "请求复查", "云州市人力资源和社会保障局"),
        "QS-HRSS", ("第三十四条", "第三十五条"))),
    "review_opinion": (review_opinion, Expected(
        ("维持原处理意见", "请求复核", "江南省信访局"), "YZ-HRSS",
        ("第三十五条", "第三十六条"))),
    "re_review_opinion": (re_review_opinion, Expected(
        ("维持复查意见", "办理终结", "不再受理"), "PROV-XFJ", ("第三十六条",))),
    "withdrawal": (withdrawal, Expected(
        ("终止办理", "已与用人单位达成和解"), "QS-HRSS", ("第三十二条",))),
}


# The kinds whose letters list the deadlines running for the matter (the opinions, the
# decisions that close it and the hearing notice say what they must without them).
SHOWS_DEADLINES = {NoticeKind.REGISTRATION, NoticeKind.ACCEPTANCE, NoticeKind.TRANSFER,
                   NoticeKind.ASSIGNMENT, NoticeKind.EXTENSION, NoticeKind.PROGRESS}


def context(**changes: Any) -> RenderContext:
    base = RenderContext(unit_names=unit_names(), query_code=CODES.code_for("QS-2026-000123"),
                         track_url=TRACK_URL)
    return replace(base, **changes)


@cache
def rendered(name: str) -> tuple[NoticeFacts, RenderedNotice, str]:
    """The facts, the rendering and the PDF's text (first page saved as a picture)."""
    import pypdfium2 as pdfium

    facts = CASES[name][0]()
    notice = render_notice(facts, context())
    pdf = pdfium.PdfDocument(notice.pdf)
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    pdf[0].render(scale=1.4).to_pil().save(OUTPUT / f"{name}.png")
    (OUTPUT / f"{name}.pdf").write_bytes(notice.pdf)
    return facts, notice, text


def flat(text: str) -> str:
    """The text without line breaks and spaces, as the letter's lines wrap it."""
    return re.sub(r"\s+", "", text)


def last_day(at: datetime) -> str:
    """Independently of the renderer: the last day of a deadline at 24:00 Beijing time."""
    local = at.astimezone(SHANGHAI)
    if local.time() == datetime.min.time():
        local -= DAY
    return f"{local.year}年{local.month}月{local.day}日"


pytestmark = pytest.mark.skipif(cjk_font_problem() is not None,
                                reason=f"{cjk_font_problem()}: run python -m devstack.prepare")


# ------------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", list(CASES))
def test_each_notice_letter_states_what_the_regulations_require(name: str) -> None:
    facts, notice, raw = rendered(name)
    expected = CASES[name][1]
    text = flat(raw)
    assert notice.pdf.startswith(b"%PDF-")
    assert raw.count("第 1 页，共 1 页") == 1, "a notice fits one page"
    if facts.kind in SHOWS_DEADLINES:
        assert facts.deadlines
    issuer = zh(expected.issuer)
    assert facts.unit == expected.issuer
    assert text.startswith(issuer), raw[:80]  # the letterhead: the unit's name
    assert "信访人：" in text and facts.registration_no in text
    for phrase in expected.phrases:
        assert flat(phrase) in text, (name, phrase, raw)
    for article in expected.articles:
        assert article in text, (name, article, raw)
    # Dates in Beijing time: the notice's own, each deadline's last day, the next right's.
    assert f"{issuer}{last_day(facts.issued_at + timedelta(microseconds=1))}" in text
    assert "2026年3月2日" in text or name != "registration"
    for deadline in facts.deadlines if facts.kind in SHOWS_DEADLINES else ():
        assert f"{zh(deadline.unit)}将于{last_day(deadline.due_at)}前" in text, raw
    if facts.next_right is not None:
        right = facts.next_right
        assert right.organ is not None and zh(right.organ) in text
        if right.due_at is not None:
            assert f"即{last_day(right.due_at)}前" in text
    # The query code and where to use it; a seal and signature block.
    assert f"查询码：{CODES.code_for(facts.registration_no)}" in text
    assert TRACK_URL in text
    assert "单位印章" in text
    # Nothing technical leaks: no unit code, no field value, no English article, no None.
    for leak in ("QS-HRSS", "QS-XFJ", "YZ-HRSS", "PROV-XFJ", "QS-COURT", "None", "Art.",
                 "_", "UTC", "{{", "days"):
        assert leak not in text, (name, leak, raw)


def test_the_dates_are_beijing_dates() -> None:
    facts, _, raw = rendered("registration")
    assert facts.issued_at.date().day == 1  # 1 March in UTC ...
    assert "2026年3月2日" in flat(raw)  # ... 2 March in Beijing
    assert "2026年3月1日" not in flat(raw)
    # A deadline at 24:00 Beijing time (16:00 UTC) is dated its last day, not the next.
    assert beijing_date(datetime(2026, 3, 17, 16, 0, tzinfo=UTC)) == "2026年3月17日"
    assert beijing_date(datetime(2026, 3, 17, 15, 59, tzinfo=UTC)) == "2026年3月17日"
    assert beijing_date(datetime(2026, 3, 17, 16, 1, tzinfo=UTC)) == "2026年3月18日"


def test_the_review_right_runs_30_days_to_the_superior_organ() -> None:
    facts = handling_opinion()
    right = facts.next_right
    assert right is not None and right.right == "request_review"
    assert right.organ == "YZ-HRSS" and right.article == "Art. 35"
    assert right.due_at is not None
    # 30 days from the opinion (issued 2026-03-23 02:00 Beijing): 24:00 of 22 April.
    assert last_day(facts.issued_at) == "2026年3月23日"
    assert last_day(right.due_at) == "2026年4月22日"
    again = review_opinion().next_right
    assert again is not None and again.right == "request_re_review"
    assert again.organ == "PROV-XFJ" and again.article == "Art. 36"


@pytest.mark.parametrize("name", list(CASES))
def test_each_sms_is_short_and_carries_the_number_and_the_code(name: str) -> None:
    facts, notice, _ = rendered(name)
    code = CODES.code_for(facts.registration_no)
    assert facts.registration_no in notice.sms
    assert f"查询码{code}" in notice.sms
    assert notice.sms.startswith(f"【{zh(CASES[name][1].issuer)}】")
    assert "\n" not in notice.sms and "  " not in notice.sms
    assert len(notice.sms) <= SMS_MAX_CHARS, (len(notice.sms), notice.sms)


@pytest.mark.parametrize("name", list(CASES))
def test_each_mail_has_a_subject_and_the_notice_in_its_body(name: str) -> None:
    facts, notice, _ = rendered(name)
    issuer = zh(CASES[name][1].issuer)
    assert notice.mail_subject.startswith(f"【{issuer}】")
    assert facts.registration_no in notice.mail_subject
    assert "\n" not in notice.mail_subject
    body = notice.mail_body
    assert body.startswith("信访人：")
    assert f"查询码：{CODES.code_for(facts.registration_no)}" in body and TRACK_URL in body
    assert body.rstrip().endswith(last_day(facts.issued_at + timedelta(microseconds=1)))
    for article in CASES[name][1].articles[:1]:
        assert article in body
    if facts.decision_text:
        assert facts.decision_text in body
    for leak in ("QS-HRSS", "YZ-HRSS", "None", "Art.", "{{", "\n\n\n"):
        assert leak not in body, (name, leak, body)


def test_every_petitioner_notice_of_the_table_has_its_templates() -> None:
    rows = [r for r in (*TRANSITIONS, REGISTRATION) if Effect.NOTICE_PETITIONER in r.effects]
    assert len(rows) >= 12
    kinds = set()
    for row in rows:
        assert row.action in ACTION_KINDS, f"{row.action} sends a notice of no kind"
        kinds.add(ACTION_KINDS[row.action])
    kinds |= {NoticeKind.ASSIGNMENT, NoticeKind.HEARING}  # a transfer's other kind; hearings
    assert kinds == set(NoticeKind)
    for kind in NoticeKind:
        for name in template_names(kind):
            assert (TEMPLATES / name).is_file(), name


def test_every_petitioner_notice_carries_its_facts_and_no_other_does() -> None:
    walk = Walk(new_case("QS-XFJ")).act(Action.TRANSFER, staff("QS-XFJ"), learn("QS-HRSS"),
                                        to_unit="QS-HRSS")
    by_kind = {n.recipient_kind: n for n in walk.notices}
    assert by_kind["unit"].facts is None
    facts = by_kind["petitioner"].facts
    assert facts is not None and facts.kind is NoticeKind.TRANSFER
    # As the workflow hands it to the outbox activity (workflows/records.py): JSON.
    assert NoticeFacts.model_validate(facts.model_dump(mode="json")) == facts
    assert facts_for(walk.case, Action.ASSIGN) is None  # no written notice


def test_a_unit_without_a_name_is_an_error_not_a_code() -> None:
    facts = transfer()
    names = {k: v for k, v in unit_names().items() if k != "QS-HRSS"}
    with pytest.raises(NoticeRenderError, match="QS-HRSS.*no name"):
        render_notice(facts, context(unit_names=names))


def test_a_bureau_may_override_a_template(tmp_path: Path) -> None:
    (tmp_path / "notices").mkdir()
    (tmp_path / "notices" / "acceptance.sms.j2").write_text(
        "{{ issuer }}：{{ f.registration_no }}已受理。查询码{{ query_code }}。", "utf-8")
    notice = render_notice(acceptance(), context(templates_dir=tmp_path))
    assert notice.sms.startswith("青山县人力资源和社会保障局：QS-2026-000123已受理。")


def test_without_a_query_code_the_letter_still_says_where_to_look() -> None:
    notice = render_notice(acceptance(), context(query_code=None, addressee="李明"))
    assert "查询码" not in notice.sms and "李明：" in notice.mail_body


def test_articles_are_cited_in_chinese() -> None:
    assert article_zh("Art. 23") == "《信访工作条例》第二十三条"
    assert article_zh("Art. 22-23") == "《信访工作条例》第二十二条、第二十三条"
    assert article_zh("Art. 31 (诉访分离)") == "《信访工作条例》第三十一条"
    assert article_zh("Regulations on the Work of Letters and Visits (2022) Art. 110") == \
        "《信访工作条例》第一百一十条"
    assert article_zh("Procuratorate rule: every letter gets a reply") == \
        "《人民检察院信访工作规定》"


def test_the_query_code_is_derived_from_the_registration_number() -> None:
    code = CODES.code_for("QS-2026-000123")
    assert len(code) == 8 and set(code) <= set(QUERY_CODE_ALPHABET)
    assert CODES.code_for("QS-2026-000123") == code  # printed again on every notice
    assert CODES.code_for("QS-2026-000124") != code
    assert QueryCodes(bytes(range(1, 33))).code_for("QS-2026-000123") != code  # keyed
    assert CODES.matches("QS-2026-000123", f"{code[:4].lower()}-{code[4:]}")
    assert not CODES.matches("QS-2026-000123", code[:-1])
    assert not CODES.matches("QS-2026-000124", code)


def test_registration_declined_as_concluded_sends_the_non_acceptance_notice() -> None:
    case = new_case(concluded_case="QS-2025-000077")
    command: Command = DeclineConcluded(actor=SYSTEM_ACTOR, concluded_case="QS-2025-000077")
    transition.take(case, TABLE[Action.DECLINE_CONCLUDED], command, T0, EffectResults(),
                    CALENDAR)
    [notice] = projections.notices_of(TABLE[Action.DECLINE_CONCLUDED], command, case)
    assert notice.template == "decline"
    assert notice.facts is not None and notice.facts.kind is NoticeKind.NON_ACCEPTANCE
    assert notice.facts.concluded_case == "QS-2025-000077"
