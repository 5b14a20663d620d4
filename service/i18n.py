"""The pages' languages: Chinese first, English by switch (gettext catalogues via Babel).

The message ids are the Chinese texts themselves, so the Chinese pages need no catalogue
and a missing English translation falls back to Chinese, never to a blank. Each page area
keeps its own catalogue, `service/locale/en/LC_MESSAGES/<area>.po` (workbench, track,
dashboard ...); they are merged when the pages are first rendered and compiled in memory,
so there is no compiled `.mo` to forget to rebuild. `tests/test_i18n.py` checks that every
message the templates and page modules mark has an English translation.

The language is the cookie `petition_lang` (`zh` or `en`), set by `GET /lang/{code}`.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("zh", "en")
DEFAULT = "zh"
LANG_COOKIE = "petition_lang"
# The `lang` attribute of the page's <html> (WCAG 3.1.1).
HTML_LANG = {"zh": "zh-CN", "en": "en"}


def catalog(language: str) -> Catalog:
    """Every area's catalogue of `language`, merged (a later file never overrides an
    earlier translation of the same id: areas share ids such as 返回)."""
    merged = Catalog(locale=language)
    for po in sorted((LOCALE_DIR / language / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if message.id and message.string and message.id not in merged:
                    merged.add(message.id, message.string)
    return merged


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> NullTranslations:
    if language == DEFAULT:
        return NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, catalog(language))
    compiled.seek(0)
    return Translations(compiled)


def language_of(cookie: str | None) -> str:
    return cookie if cookie in LANGUAGES else DEFAULT


def gettext(language: str, message: str) -> str:
    """One message in `language`, for text built in Python (flash messages, refusals)."""
    return translations(language).gettext(message)


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark, translate later"
    """Marks a message for the catalogues; the template translates it when rendering."""
    return message
