"""The annotation page in a real headless Chromium (Debian's `chromium`, driven by Playwright with
`executable_path`; `.ci/run` installs both): a person annotates by clicking and by keyboard, undoes,
the server restarts and each person resumes where they stopped, a second person shares the work,
pair mode shows both images; then the stored answers and the export are checked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fl_sim.run_store import RunStore
from pipeline.annotators import annotation_source
from pipeline.cli import main
from semsim.annotate.server import create_app
from semsim.annotate.session import Session
from semsim.annotate.store import AnswerStore
from semsim.data import read_annotations
from tests.pipeline.conftest import make_scored_run
from tests.semsim.serving import running

CHROMIUM = os.environ.get("FLAUDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: `apt-get install chromium` (.ci/run does), or set FLAUDIT_CHROMIUM=/path/to/chrome"
)
LAPTOP = {"width": 1366, "height": 768}


def _sitting(run: Path, mode: str | None = None) -> Session:
    return Session([annotation_source(RunStore(run), mode=mode)], capacity=1)  # type: ignore[arg-type]


def _shown(page, session: Session):  # type: ignore[no-untyped-def]
    """The item the page shows now, read from its image's URL."""
    src = page.get_attribute("#rec", "src")
    return session.shown[src.split("/")[2]]


def _wait_progress(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("text => document.getElementById('progress').textContent.startsWith(text)", arg=text, timeout=30_000)


def _wait_new_item(page, old_src: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("old => document.getElementById('rec').getAttribute('src') !== old", arg=old_src, timeout=30_000)
    _wait_ready(page)


def _wait_ready(page) -> None:  # type: ignore[no-untyped-def]
    """The answers are enabled once the images have loaded."""
    page.wait_for_selector("#choices button:not([disabled])", timeout=30_000)


def test_people_annotate_in_a_real_browser(digits, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    run = make_scored_run(tmp_path / "run", digits)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        alice_context = browser.new_context(viewport=LAPTOP)
        session = _sitting(run)
        answered: list[tuple[str, str]] = []
        with running(create_app(session)) as url:
            page = alice_context.new_page()
            page.goto(url)
            page.fill("#annotator", "alice")
            page.press("#annotator", "Enter")
            _wait_progress(page, "0 of 12 judged by you")
            _wait_ready(page)
            # Nearest-neighbour enlargement of the 8x8 digit, and every answer on a laptop screen.
            assert page.eval_on_selector("#rec", "img => [img.naturalWidth, getComputedStyle(img).imageRendering]") == [8, "pixelated"]
            assert page.eval_on_selector("#rec", "img => img.getBoundingClientRect().width") >= 200
            assert page.is_hidden("#fig-ori")  # the original would give the answer away
            boxes = page.eval_on_selector_all("#choices button", "bs => bs.map(b => b.getBoundingClientRect().bottom)")
            assert len(boxes) == 11 and max(boxes) <= LAPTOP["height"]

            # 1: a click on the true class answers at once.
            shown = _shown(page, session)
            src = page.get_attribute("#rec", "src")
            page.click(f'#choices button[data-value="{shown.item.label}"]')
            _wait_progress(page, "1 of 12")
            _wait_new_item(page, src)
            answered.append((shown.item.id, str(shown.item.label)))
            # 2: keyboard: u selects "unrecognisable", Enter confirms.
            shown, src = _shown(page, session), page.get_attribute("#rec", "src")
            page.keyboard.press("u")
            assert page.get_attribute("#choices button.selected", "data-value") == "unrecognisable"
            page.keyboard.press("Enter")
            _wait_progress(page, "2 of 12")
            _wait_new_item(page, src)
            answered.append((shown.item.id, "unrecognisable"))
            # 3: the digit's own key, then Backspace undoes it and shows that image again.
            shown, src = _shown(page, session), page.get_attribute("#rec", "src")
            page.keyboard.press(str(shown.item.label))
            page.keyboard.press("Enter")
            _wait_progress(page, "3 of 12")
            page.keyboard.press("Backspace")
            _wait_progress(page, "2 of 12")
            page.wait_for_function("old => document.getElementById('rec').getAttribute('src') === old", arg=src)
            _wait_ready(page)
            assert "undone" in page.text_content("#status")
            wrong = str((shown.item.label + 1) % 10)
            page.keyboard.press(wrong)
            page.keyboard.press("Enter")
            _wait_progress(page, "3 of 12")
            answered.append((shown.item.id, wrong))
            page.close()

        # The server restarts (same port: the page's origin, where the browser keeps alice's name): she
        # resumes at 3; bob shares the rest.
        session = _sitting(run)
        with running(create_app(session), port=int(url.rsplit(":", 1)[1])) as url:
            page = alice_context.new_page()
            page.goto(url)
            _wait_progress(page, "3 of 12 judged by you")
            assert _shown(page, session).item.id not in {item for item, _ in answered}
            bob = browser.new_context(viewport=LAPTOP).new_page()
            bob.goto(url)
            bob.fill("#annotator", "bob")
            bob.press("#annotator", "Enter")
            _wait_progress(bob, "0 of 8")  # 3 answered and 1 in front of alice: one person per item
            shown = _shown(bob, session)
            assert shown.item.id != _shown(page, session).item.id
            bob.click('#choices button[data-value="unrecognisable"]')
            _wait_progress(bob, "1 of 8")

        # Pair mode: the original beside the reconstruction, s / d / c.
        pair_run = make_scored_run(tmp_path / "pairs", digits)
        session = _sitting(pair_run, "pair")
        with running(create_app(session), port=int(url.rsplit(":", 1)[1])) as url:
            page = alice_context.new_page()
            page.goto(url)
            _wait_progress(page, "0 of 12")
            _wait_ready(page)
            assert page.eval_on_selector_all("#images img", "imgs => imgs.map(img => img.naturalWidth)") == [8, 8]
            assert page.is_visible("#fig-ori") and page.is_visible("#fig-rec")
            assert page.eval_on_selector_all("#choices button kbd", "ks => ks.map(k => k.textContent)") == ["s", "d", "c"]
            page.keyboard.press("s")
            page.keyboard.press("Enter")
            _wait_progress(page, "1 of 12")
        browser.close()

    stored = {(a.annotator, a.item): a.choice for a in AnswerStore(RunStore(run).root / "annotations" / "answers.sqlite").answers()}
    assert {key: value for key, value in stored.items() if key[0] == "alice"} == {("alice", item): choice for item, choice in answered}
    assert [choice for (who, _), choice in stored.items() if who == "bob"] == ["unrecognisable"]
    assert [a.choice for a in AnswerStore(pair_run / "annotations" / "answers.sqlite").answers()] == ["same"]

    out = tmp_path / "people.jsonl"
    assert main(["annotate", "export", str(run), "--out", str(out)]) == 0
    records = read_annotations(out).annotations
    assert len(records) == 4 and sorted({r.annotator for r in records}) == ["alice", "bob"]
    first = next(r for r in records if r.annotator == "alice" and r.recognisable)
    assert first.reconstruction.endswith("_rec.png") and sum(r.recognisable for r in records) == 1
