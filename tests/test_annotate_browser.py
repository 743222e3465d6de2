"""vital annotate end to end in headless Chromium: sign in by link, annotate with the keyboard, export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_annotate import LiveServer, make_corpus
from vital.annotate import AnnotationDB, add_user, issue_login_token, load_corpus, login_url
from vital.annotate.db import Task
from vital.jsonl import read_records
from vital.records import Preference

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("VITAL_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (`make browser` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def shown_task(page) -> dict:
    return json.loads(page.locator("#task-data").text_content())


def demos_tasks(database: AnnotationDB) -> int:
    with database.read() as session:
        return session.query(Task).filter(Task.kind == "demos").count()


def test_sign_in_annotate_three_items_with_the_keyboard_and_export(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from vital.annotate.app import create_app
    from vital.cli import app as cli

    database = AnnotationDB(tmp_path / "annotations.db")
    load_corpus(database, *make_corpus(tmp_path / "corpus"))
    user, _ = add_user(database, "dr-ana")
    with LiveServer(create_app(database)) as live:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))

        page.goto(login_url(live.url, issue_login_token(database, user)))
        expect(page.locator("h1")).to_have_text("Welcome, dr-ana")
        with page.expect_navigation():
            page.click("#start-compare")

        expected = []
        for key, letter in [("a", "A"), ("b", "B"), ("1", "A")]:
            task = shown_task(page)
            shown = [c["id"] for c in task["candidates"]]
            chosen = shown[0] if letter == "A" else shown[1]
            expected.append((task["task_id"], chosen, next(c for c in shown if c != chosen)))
            with page.expect_navigation():
                page.keyboard.press(key)
        assert shown_task(page)["task_id"] not in [e[0] for e in expected]

        # back to the third answer with the arrow key: it is shown, and the B key revises it
        with page.expect_navigation():
            page.keyboard.press("ArrowLeft")
        assert shown_task(page)["task_id"] == expected[2][0]
        expect(page.locator(".choice.selected")).to_have_attribute("data-choice", "A")
        task_id, chosen, rejected = expected[2]
        expected[2] = (task_id, rejected, chosen)
        with page.expect_navigation():
            page.keyboard.press("b")

        # the next figure is a CT (DICOM): zoom with the keyboard, switch the window, keep a screenshot
        task = shown_task(page)
        assert task["figure"]["id"] == "fig1" and "lung" in task["figure"]["windows"]
        image = page.locator("#figure-image")
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") == 128
        page.keyboard.press("+")
        assert "scale(1.5)" in image.evaluate("img => img.style.transform")
        box = page.locator("#viewer").bounding_box()
        page.keyboard.down("Shift")
        page.mouse.move(box["x"] + 300, box["y"] + 200)
        page.mouse.down()
        page.mouse.move(box["x"] + 400, box["y"] + 150, steps=4)
        page.mouse.up()
        page.keyboard.up("Shift")
        assert image.evaluate("img => img.style.filter") != "brightness(1) contrast(1)"
        page.keyboard.press("r")
        assert image.evaluate("img => img.style.filter") == "brightness(1) contrast(1)"
        page.select_option("#window", "lung")
        expect(image).to_have_attribute("src", "/images/fig1?window=lung")
        expect(image).to_have_js_property("complete", True)
        page.select_option("#window", "default")
        expect(image).to_have_js_property("complete", True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "annotate.png"))

        # demonstrations: opening the page hands out nothing (a GET); its Start button asks for a task (a POST)
        page.goto(f"{live.url}/annotate/demos")
        expect(page.locator("h1")).to_have_text("Choose demonstrations")
        assert demos_tasks(database) == 0
        with page.expect_navigation():
            page.click("#start-demos")
        demo = shown_task(page)
        assert demos_tasks(database) == 1
        # Shift+2 marks the second acceptable, 1 picks the first as best, Enter saves
        page.keyboard.press("Shift+Digit2")
        page.keyboard.press("1")
        expect(page.locator("#candidate-1")).to_have_class("candidate is-acceptable is-best")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert shown_task(page)["task_id"] != demo["task_id"]

        # another annotator's link, opened while signed in: a question first, the switch on request
        ben, _ = add_user(database, "dr-ben")
        page.goto(login_url(live.url, issue_login_token(database, ben)))
        expect(page.locator("h1")).to_have_text("Sign in as dr-ben?")
        with page.expect_navigation():
            page.click("#switch-user")
        expect(page.locator("h1")).to_have_text("Welcome, dr-ben")
        assert problems == []

    out = tmp_path / "preferences.jsonl"
    result = CliRunner().invoke(
        cli, ["annotate", "export", "--db", database.url, "--kind", "preferences", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = list(read_records(out, Preference))
    compare = {(r.task_id, r.chosen, r.rejected) for r in records if r.task_kind == "compare"}
    assert compare == set(expected)
    assert all(r.source == "human" and r.annotator == "dr-ana" for r in records)
    demo_ids = [c["id"] for c in demo["candidates"]]
    demos = {(r.chosen, r.rejected) for r in records if r.task_kind == "demos"}
    others = [c for c in demo_ids if c != demo_ids[0]]
    # best over every other; the second (acceptable) over each unacceptable one
    assert demos == {(demo_ids[0], c) for c in others} | {(demo_ids[1], c) for c in demo_ids[2:]}
