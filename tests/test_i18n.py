"""The English switch is complete: every message the pages mark for translation (in the
templates `_()` / `{% trans %}`, in the page modules `gettext(lang, "...")`) has an English
text in one of the catalogues under service/locale/en, and nothing in a catalogue is stale
Chinese left untranslated."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from service import i18n
from service.pages import templates

SERVICE = Path(__file__).resolve().parent.parent / "service"
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "N_": None, "gettext": (2,), "ngettext": (1, 2)}


def marked_messages() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
            str(SERVICE), METHODS, OPTIONS, keywords=KEYWORDS):
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.setdefault(text, filename)
    return found


def test_the_pages_mark_messages() -> None:
    assert len(marked_messages()) >= 8


def test_every_marked_message_has_an_english_text() -> None:
    english = i18n.catalog("en")
    missing = sorted(f"{where}: {text}" for text, where in marked_messages().items()
                     if text not in english or not english[text].string)
    assert not missing, "no English text for:\n" + "\n".join(missing)


def test_english_texts_are_not_chinese() -> None:
    untranslated = [m.id for m in i18n.catalog("en")
                    if m.id and any("\u4e00" <= ch <= "\u9fff" for ch in str(m.string))]
    assert not untranslated


@pytest.mark.parametrize("language, expected", [("zh", "工作台"), ("en", "Workbench")])
def test_templates_render_in_the_chosen_language(language: str, expected: str) -> None:
    assert templates(language).from_string('{{ _("工作台") }}').render() == expected
