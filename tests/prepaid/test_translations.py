import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import translation

LOCALE = "zh_Hans"
PO = settings.BASE_DIR / "locale" / LOCALE / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
# The same as `make messages`.
IGNORE = [".venv", "var", "static", "tests/*", "bench/*"]
# printf-style placeholders as gettext's python-format sees them; blocktranslate's {{ x }}
# reaches the .po as %(x)s and a literal % as %%.
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrs%]")


def _committed():
    with PO.open("rb") as f:
        # A malformed entry (two msgstr[] for a one-form language, say) fails here.
        return read_po(f, abort_invalid=True)


def _messages(catalog) -> dict:
    # read_mo gives a plural entry's ids and strings as lists and contexts as bytes, read_po
    # tuples and text.
    def key(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    def context(value):
        return value.decode() if isinstance(value, bytes) else value

    return {(context(m.context), key(m.id)): key(m.string) for m in catalog if m.id}


def _placeholders(text: str) -> Counter:
    return Counter(PLACEHOLDER.findall(text))


def test_the_header_declares_chinese_with_one_plural_form():
    # As written: babel rebuilds these headers from its own idea of the locale.
    text = PO.read_text(encoding="utf-8")
    for header in [
        "Language: zh_Hans",
        "Plural-Forms: nplurals=1; plural=0;",
        "Content-Type: text/plain; charset=UTF-8",
    ]:
        assert f'"{header}\\n"' in text, header
    assert not _committed().fuzzy


def test_every_entry_is_translated_keeping_its_placeholders():
    problems = []
    for message in _committed():
        if not message.id:
            continue
        # Chinese has one form, msgstr[0], which stands for every count: it must carry what
        # the plural msgid carries.
        msgid = message.id[-1] if message.pluralizable else message.id
        strings = message.string if message.pluralizable else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {msgid!r}")
        if message.pluralizable and len(strings) != 1:
            problems.append(f"{len(strings)} forms, not 1: {msgid!r}")
        for string in strings:
            if not string.strip():
                problems.append(f"untranslated: {msgid!r}")
            elif _placeholders(string) != _placeholders(msgid):
                problems.append(f"placeholders differ: {msgid!r} -> {string!r}")
    assert not problems, "\n".join(problems)


def test_the_committed_mo_is_compiled_from_the_committed_po():
    with MO.open("rb") as f:
        compiled = _messages(read_mo(f))
    assert compiled == _messages(_committed()), (
        f"{MO.relative_to(settings.BASE_DIR)} is stale: run `make messages` and commit both files."
    )


def _locale_files() -> dict:
    # The real catalogue and any app's locale/ dir: makemessages must leave them alone. It keeps
    # the header's date when nothing else changed, so a rewrite shows only in the mtime.
    dirs = [settings.BASE_DIR / "locale", *settings.BASE_DIR.glob("*/locale")]
    return {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for d in dirs
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_the_po_holds_exactly_the_strings_in_the_source(monkeypatch):
    if shutil.which("xgettext") is None:
        pytest.fail(
            "xgettext is missing, so the catalogue cannot be checked against the source. "
            "Install Debian's gettext: scripts/ensure-packages (make test runs it)."
        )
    monkeypatch.chdir(settings.BASE_DIR)
    before = _locale_files()
    # makemessages sends each source file to the first locale path whose parent holds it, and
    # always adds ./locale: only a directory directly in BASE_DIR comes before the real one.
    # The leading dot keeps makemessages (and ruff) out of it.
    with tempfile.TemporaryDirectory(prefix=".makemessages-", dir=settings.BASE_DIR) as tmp:
        with override_settings(LOCALE_PATHS=[tmp]):
            call_command(
                "makemessages",
                locale=[LOCALE],
                no_obsolete=True,
                # "locale" keeps app locale/ dirs from claiming their app's strings.
                ignore_patterns=[*IGNORE, "locale"],
                verbosity=0,
            )
        after = _locale_files()
        changed = sorted(
            str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p)
        )
        assert not changed, f"makemessages wrote into real locale/ directories: {changed}"
        with (Path(tmp) / LOCALE / "LC_MESSAGES" / "django.po").open("rb") as f:
            current = set(_messages(read_po(f)))
    committed = set(_messages(_committed()))
    missing = sorted((msgid for _, msgid in current - committed), key=str)
    extra = sorted((msgid for _, msgid in committed - current), key=str)
    assert (missing, extra) == ([], []), (
        f"{PO.relative_to(settings.BASE_DIR)} is out of date with the source: run `make messages`, "
        "translate the new entries, run it again and commit the .po and the .mo.\n"
        f"missing: {missing}\nno longer in the source: {extra}"
    )


def test_the_catalogue_is_loaded_for_zh_hans():
    with translation.override("zh-hans"):
        assert translation.gettext("Sign in") == "登录"
        days = translation.ngettext("about %(days)s day", "about %(days)s days", 3)
        assert days % {"days": 3} == "约 3 天"


@pytest.mark.django_db
def test_the_sign_in_page_is_in_chinese_for_a_chinese_browser(client):
    with translation.override("en"):
        response = client.get(reverse("portal:sign-in"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    content = response.content.decode()
    assert '<html lang="zh-hans">' in content
    assert 'data-testid="sign-in">登录</button>' in content
    assert "改用验证码登录" in content
    assert "Sign in with a code instead" not in content
