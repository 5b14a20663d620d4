"""A written notice rendered: the letter as PDF (WeasyPrint, Noto CJK), the SMS and the
e-mail, from its facts (domain.notice_facts.NoticeFacts) and three templates per kind under
documents/templates/notices/ (`<kind>.html.j2`, `<kind>.sms.j2`, `<kind>.mail.j2`).

The wording is the templates' (docs/notices.md says how a bureau edits it); this module
supplies the facts and the filters that present them: dates in Beijing time, the units'
names from the directory (a unit without a name is an error, never its code printed), the
article in Chinese. Templates use strict undefined: a misspelt field fails the render.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from documents.fonts import cjk_font_problem
from domain.notice_facts import NoticeFacts, NoticeKind

__all__ = ["NoticeRenderError", "RenderContext", "RenderedNotice", "TEMPLATES",
           "article_zh", "beijing_date", "chinese_name", "render_notice", "template_names"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
NOTICES = "notices"
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
SMS_MAX_CHARS = 70  # one SMS of Chinese text (UCS-2: 70 characters)


class NoticeRenderError(Exception):
    """A notice that cannot be rendered as it must be (a unit without a name, no Chinese
    font, a template error): one line saying which."""


@dataclass(frozen=True)
class RenderContext:
    unit_names: Mapping[str, str]  # unit code -> its name, from the directory
    query_code: str | None  # the petitioner's query code (security/query_code.py)
    track_url: str  # the service's /track page, where the code is used
    addressee: str | None = None  # the petitioner's name; None: "信访人"
    english_gloss: bool = True  # an English line under each letter's title
    templates_dir: Path | None = None  # a bureau's own templates, before the shipped ones


@dataclass(frozen=True)
class RenderedNotice:
    pdf: bytes
    sms: str
    mail_subject: str
    mail_body: str


def template_names(kind: NoticeKind | str) -> tuple[str, str, str]:
    """The letter, SMS and e-mail templates of a kind of notice."""
    value = NoticeKind(kind).value
    return (f"{NOTICES}/{value}.html.j2", f"{NOTICES}/{value}.sms.j2",
            f"{NOTICES}/{value}.mail.j2")


# ------------------------------------------------------------------ presentation


def _local(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise NoticeRenderError(f"a time without a time zone: {at.isoformat()}")
    return at.astimezone(BEIJING)


def beijing_date(at: datetime) -> str:
    """A date in Beijing time, as a letter writes it: 2026年12月3日. A deadline at 24:00
    (00:00 of the next day) is the day before: its last day."""
    local = _local(at)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        local -= timedelta(days=1)
    return f"{local.year}年{local.month}月{local.day}日"


def beijing_month_day(at: datetime) -> str:
    """A date without its year, for an SMS: 12月3日 (a deadline at 24:00: its last day)."""
    return beijing_date(at).partition("年")[2]


def beijing_datetime(at: datetime) -> str:
    """A moment in Beijing time: 2026年4月10日9时30分."""
    local = _local(at)
    minute = f"{local.minute}分" if local.minute else ""
    return f"{local.year}年{local.month}月{local.day}日{local.hour}时{minute}"


def beijing_time(at: datetime) -> str:
    local = _local(at)
    return f"{local.hour}时{local.minute}分" if local.minute else f"{local.hour}时"


_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1..999 in Chinese numerals, as articles are cited: 二十三, 一百零五."""
    if not 0 < n < 1000:
        return str(n)
    hundreds, tens, ones = n // 100, n // 10 % 10, n % 10
    out = ""
    if hundreds:
        out += _DIGITS[hundreds] + "百"
        if tens == 0 and ones:
            return out + "零" + _DIGITS[ones]
    if tens:
        out += ("" if tens == 1 and not hundreds else _DIGITS[tens]) + "十"
    if ones:
        out += _DIGITS[ones]
    return out


# Which law an article string cites (the lifecycle table, the profiles).
_LAWS = (
    ("procuratorate", "《人民检察院信访工作规定》"),
    ("judicial assistance", "《关于建立完善国家司法救助制度的意见（试行）》"),
    ("", "《信访工作条例》"),
)
_ARTICLE = re.compile(r"Art\.\s*(\d+)(?:\s*-\s*(\d+))?")


def article_zh(article: str) -> str:
    """`Art. 23` -> 《信访工作条例》第二十三条; `Art. 22-23` -> ...第二十二条、第二十三条;
    a rule without article numbers -> the rule's name."""
    lowered = article.casefold()
    law = next(name for key, name in _LAWS if key in lowered)
    numbers: list[int] = []
    for first, last in _ARTICLE.findall(article):
        span = range(int(first), int(last or first) + 1)
        numbers += [n for n in span if n not in numbers][:10]
    if not numbers:
        return law
    return law + "、".join(f"第{chinese_number(n)}条" for n in numbers)


def _yuan(amount: str | None) -> str:
    if amount is None:
        return ""
    whole, _, cents = amount.partition(".")
    cents = cents.rstrip("0")
    return f"{int(whole):,}" + (f".{cents.ljust(2, '0')}" if cents else "")


# ------------------------------------------------------------------------ render


@cache
def _environment(templates_dir: Path | None, autoescape: bool) -> jinja2.Environment:
    paths = [str(p) for p in (templates_dir, TEMPLATES) if p is not None]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths, encoding="utf-8"),
        undefined=jinja2.StrictUndefined, autoescape=autoescape,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters.update(date=beijing_date, md=beijing_month_day, datetime=beijing_datetime,
                       time=beijing_time, article=article_zh, yuan=_yuan, cn=chinese_number)
    return env


# A directory name may follow the Chinese with an English one ("青山县信访局 Qingshan
# County Petition Bureau", domain/directory/sample.toml): a notice uses the Chinese.
_BILINGUAL = re.compile(r"^([^\x00-\x7f][^A-Za-z]*?)\s+[A-Za-z].*$", re.DOTALL)


def chinese_name(name: str) -> str:
    found = _BILINGUAL.match(name.strip())
    return found.group(1).strip() if found else name.strip()


def _unit_lookup(names: Mapping[str, str]) -> Any:
    def unit(code: str | None) -> str:
        name = chinese_name(names.get(code or "") or "")
        if not name:
            raise NoticeRenderError(
                f"unit {code!r} has no name in the directory: a notice names the unit, "
                "never its code")
        return name
    return unit


def _variables(facts: NoticeFacts, context: RenderContext) -> dict[str, Any]:
    unit = _unit_lookup(context.unit_names)
    # Every unit the notice names is looked up before anything is rendered.
    for code in [facts.unit, facts.to_unit,
                 facts.next_right.organ if facts.next_right else None,
                 *(d.unit for d in facts.deadlines)]:
        if code is not None:
            unit(code)
    return {"f": facts, "unit": unit, "issuer": unit(facts.unit),
            "query_code": context.query_code, "track_url": context.track_url,
            "addressee": context.addressee or "信访人", "gloss": context.english_gloss}


def _render(env: jinja2.Environment, name: str, variables: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(variables)
    except jinja2.TemplateNotFound as err:
        raise NoticeRenderError(f"no template {err.name} (documents/templates/"
                                f"{NOTICES}/)") from None
    except jinja2.TemplateError as err:
        raise NoticeRenderError(f"template {name}: {err}") from None


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", "", text).strip()


def render_letter_html(facts: NoticeFacts, context: RenderContext) -> str:
    letter, _, _ = template_names(facts.kind)
    return _render(_environment(context.templates_dir, True), letter,
                   _variables(facts, context))


def render_notice(facts: NoticeFacts, context: RenderContext) -> RenderedNotice:
    """The notice's letter (PDF), SMS and e-mail. NoticeRenderError if it cannot be
    rendered as it must be: a unit without a name, a missing template or font."""
    variables = _variables(facts, context)
    letter, sms, mail = template_names(facts.kind)
    html = _render(_environment(context.templates_dir, True), letter, variables)
    text_env = _environment(context.templates_dir, False)
    sms_text = _one_line(_render(text_env, sms, variables))
    subject, _, body = _render(text_env, mail, variables).strip().partition("\n")
    return RenderedNotice(pdf=_pdf(html), sms=sms_text, mail_subject=subject.strip(),
                          mail_body=body.strip() + "\n")


def _pdf(html: str) -> bytes:
    problem = _font_problem()
    if problem is not None:
        raise NoticeRenderError(problem)
    from weasyprint import HTML  # imports pango: only where letters are rendered

    pdf = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf


_fonts_ok = False


def _font_problem() -> str | None:
    """The font check, once per process once it passes (fonts do not vanish mid-run)."""
    global _fonts_ok
    if _fonts_ok:
        return None
    problem = cjk_font_problem()
    _fonts_ok = problem is None
    return problem
