"""vital.annotate: the API through the test client, agreement, exports, and a real server under load."""

from __future__ import annotations

import io
import json
import logging
import math
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.annotate import (
    AnnotationDB,
    ServeConfig,
    add_user,
    agreement_report,
    export_demonstrations,
    export_preferences,
    issue_login_token,
    load_corpus,
    login_url,
)
from vital.annotate.agreement import cohen_kappa, krippendorff_alpha_nominal
from vital.annotate.db import FigureRow, LoginToken, SchemaInfo, Task, image_folders
from vital.errors import InputError
from vital.jsonl import read_records
from vital.records import Figure, Preference, read_figures

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vital.annotate.app import create_app  # noqa: E402
from vital.annotate.middleware import RedactTokens  # noqa: E402

# ---- a small corpus: a PNG, a CT DICOM, a figure without image, a figure with one candidate --------------


FIGURE_KINDS = [
    (
        "images/xray.png",
        "chest_xray",
        "Frontal chest radiograph showing a right lower lobe consolidation with an air bronchogram.",
        "Which lobe is affected?",
    ),
    (
        "images/ct.dcm",
        "ct_scan",
        "Axial CT slice at the level of a thoracic vertebra; the vertebral body and posterior elements "
        "are intact and no paraspinal mass is seen.",
        "What imaging modality and plane is this?",
    ),
    (
        None,
        "histology",
        "H&E section of a lymph node with effaced architecture (x20).",
        "What stain was used?",
    ),
]
ANSWERS = [
    "Compare with a prior study and correlate with the clinical findings.",
    "A lateral view would help localise the abnormality.",
    "Nothing further: the image answers the question.",
]


def make_corpus(root: Path, *, figures: int = 3, candidates_per_figure: int = 3) -> tuple[Path, Path]:
    """Figures JSONL (relative image paths) and candidates JSONL under ``root``."""
    import pydicom.data

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((96, 128, 3)) * 255).astype("uint8")).save(images / "xray.png")
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), images / "ct.dcm")
    records, candidates = [], []
    for number in range(figures):
        image, domain, caption, question = FIGURE_KINDS[number % 3]
        records.append(
            {
                "id": f"fig{number}",
                "image": image,
                "domains": [domain],
                "caption": caption,
                "mentions": [f"As shown in Figure {number}, the finding is clearly visible."],
            }
        )
        for index in range(candidates_per_figure):
            candidates.append(
                {
                    "id": f"fig{number}-c{index}",
                    "figure_id": f"fig{number}",
                    "conversations": [
                        {"from": "human", "value": f"<image>\n{question}"},
                        {"from": "gpt", "value": f"Candidate {index} describes figure {number}."},
                        {"from": "human", "value": "What would you check next?"},
                        {"from": "gpt", "value": ANSWERS[index % len(ANSWERS)]},
                    ],
                    "generator": {"backend": "caption", "model": "test"},
                }
            )
    records.append({"id": "lonely", "image": "images/xray.png", "caption": "Only one candidate."})
    candidates.append(
        {
            "id": "lonely-c0",
            "figure_id": "lonely",
            "conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}],
        }
    )
    figures_path, candidates_path = root / "figures.jsonl", root / "candidates.jsonl"
    figures_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    candidates_path.write_text("".join(json.dumps(c) + "\n" for c in candidates))
    return figures_path, candidates_path


@pytest.fixture
def db(tmp_path: Path) -> AnnotationDB:
    database = AnnotationDB(f"sqlite:///{tmp_path / 'annotations.db'}")
    load_corpus(database, *make_corpus(tmp_path / "corpus"))
    return database


def sign_in(client: TestClient | httpx.Client, db: AnnotationDB, name: str, *, admin: bool = False) -> str:
    """Log ``client`` in as ``name`` through a login link; returns the CSRF token."""
    user, _ = add_user(db, name, admin=admin)
    response = client.get(login_url("", issue_login_token(db, user)), follow_redirects=True)
    assert response.status_code == 200, response.text
    return client.cookies["csrf_token"]


def client_for(db: AnnotationDB, name: str, *, overlap: int = 1, admin: bool = False) -> tuple[TestClient, dict]:
    client = TestClient(create_app(db, ServeConfig(overlap=overlap)))
    return client, {"X-CSRF-Token": sign_in(client, db, name, admin=admin)}


def next_of(client: TestClient | httpx.Client, kind: str):
    """Ask for the next task as the page does: a POST with the CSRF header."""
    return client.post("/api/tasks/next", params={"kind": kind}, headers={"X-CSRF-Token": client.cookies["csrf_token"]})


def answer_all(client: TestClient, headers: dict, kind: str, choose) -> list[dict]:
    """Answer every task of ``kind`` the router gives; ``choose(task) -> payload``."""
    seen = []
    while (response := next_of(client, kind)).status_code == 200:
        task = response.json()
        reply = client.post(f"/api/tasks/{task['task_id']}/answer", json=choose(task), headers=headers)
        assert reply.status_code == 200, reply.text
        seen.append(task)
    assert response.status_code == 204
    return seen


# ---- loading ------------------------------------------------------------------------------------------


def test_loading_is_idempotent_and_makes_pairs_and_demo_items(tmp_path: Path) -> None:
    database = AnnotationDB(tmp_path / "a.db")
    figures, candidates = make_corpus(tmp_path)
    first = load_corpus(database, figures, candidates)
    assert first.new_items == {"compare": 9, "demos": 3}  # 3 figures x C(3,2) pairs; "lonely" has no pair
    assert first.figures_without_pairs == 1
    again = load_corpus(database, figures, candidates)
    assert again.new_items == {"compare": 0, "demos": 0}
    assert again.total_items == {"compare": 9, "demos": 3}


def test_loading_names_the_line_of_a_candidate_for_an_unknown_figure(tmp_path: Path) -> None:
    database = AnnotationDB(tmp_path / "a.db")
    figures, candidates = make_corpus(tmp_path)
    with candidates.open("a") as handle:
        handle.write(
            json.dumps({"id": "x", "figure_id": "nope", "conversations": [{"from": "human", "value": "Q"}]}) + "\n"
        )
    lines = len(candidates.read_text().splitlines())
    with pytest.raises(InputError) as error:
        load_corpus(database, figures, candidates)
    assert error.value.line == lines and error.value.field == "figure_id" and "nope" in str(error.value)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    with pytest.raises(InputError) as error:
        AnnotationDB("postgresql://bob:s3cret@127.0.0.1:9/annotations")
    assert "s3cret" not in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("postgresql+psycopg://bob:***@127.0.0.1:9/annotations: cannot open")


def test_a_database_from_a_newer_vital_is_refused(tmp_path: Path) -> None:
    database = AnnotationDB(tmp_path / "a.db")
    with database.write() as session:
        session.get(SchemaInfo, 1).version = 99
    with pytest.raises(InputError, match="schema version 99"):
        AnnotationDB(tmp_path / "a.db")


def answer_as(db: AnnotationDB, user, kind: str, choose) -> int:
    """Answer every task of ``kind`` the router gives ``user`` through the Python API; returns how many."""
    from vital.annotate import next_task, submit_answer, task_view

    count = 0
    while (task_id := next_task(db, user, kind)) is not None:
        submit_answer(db, user, task_id, choose(task_view(db, user, task_id), count))
        count += 1
    return count


def test_the_pipeline_api_loads_counts_and_exports_by_database_path(tmp_path: Path) -> None:
    from vital.annotate import AnnotationCounts, ExportConfig, annotation_counts, export_annotations

    figures, candidates = make_corpus(tmp_path / "corpus")
    path = tmp_path / "round.db"
    loaded = load_corpus(path, figures, candidates)  # a path: opened for the call and closed
    assert loaded.total_items == {"compare": 9, "demos": 3} and loaded.candidates == 10
    assert loaded.image_folders == [(tmp_path / "corpus").resolve()] and loaded.images_outside == 0
    assert annotation_counts(path) == AnnotationCounts({"compare": 0, "demos": 0}, 0, 0, 0, {})

    database = AnnotationDB(path)
    user, _ = add_user(database, "ana")
    # compare: the first shown wins, except one tie; demos: the first shown is best, nothing else acceptable
    assert answer_as(database, user, "compare", lambda task, n: {"choice": "tie" if n == 4 else "A"}) == 9
    assert answer_as(database, user, "demos", lambda task, n: {"best": task["candidates"][0]["id"]}) == 3
    counts = annotation_counts(str(path))
    assert counts == AnnotationCounts({"compare": 9, "demos": 3}, 1, 8 + 3 * 2, 3, {"compare:tie": 1})

    prefs = export_annotations(f"sqlite:///{path}", tmp_path / "prefs.jsonl", ExportConfig(kind="preferences"))
    assert prefs.records == counts.preferences and prefs.skipped == {"compare:tie": 1}
    assert len(list(read_records(prefs.out, Preference))) == 14
    assert export_preferences(path, tmp_path / "compare.jsonl", answers="compare").records == 8
    demos = export_demonstrations(path, tmp_path / "demos.jsonl")
    assert demos.records == counts.demonstrations == 3 and demos.out == tmp_path / "demos.jsonl"
    with pytest.raises(InputError, match="no annotation database"):
        annotation_counts(tmp_path / "typo.db")
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(InputError) as error:
        export_preferences(path, tmp_path / "x.jsonl", answers="judge")
    assert error.value.field == "answers"


def test_loading_takes_records_and_refuses_empty_inputs_before_writing(tmp_path: Path) -> None:
    from vital.records import read_candidates

    figures, candidates = make_corpus(tmp_path / "corpus")
    database = AnnotationDB(tmp_path / "a.db")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args, named in [((empty, candidates), empty), ((figures, empty), empty)]:
        with pytest.raises(InputError, match="has no records") as error:
            load_corpus(database, *args)
        assert error.value.path == str(named)
    with pytest.raises(InputError, match="no candidates given"):
        load_corpus(database, figures, [])
    with database.read() as session:  # nothing was written
        assert session.query(FigureRow).count() == 0 and image_folders(session) == []

    records = list(read_figures(figures))
    again = load_corpus(AnnotationDB(tmp_path / "b.db"), {f.id: f for f in records}, read_candidates(candidates))
    assert again.total_items == {"compare": 9, "demos": 3}
    assert again.image_folders == [] and again.images_outside == 3  # records name no folder: no image is shown


def test_a_version_1_database_is_upgraded_and_shows_images_after_loading_again(tmp_path: Path, caplog) -> None:
    from sqlalchemy import text

    from vital.annotate.loading import warn_if_not_ready
    from vital.annotate.tasks import figure_image

    figures, candidates = make_corpus(tmp_path / "corpus")
    path = tmp_path / "old.db"
    load_corpus(path, figures, candidates)
    database = AnnotationDB(path)
    with database.write() as session:  # what a database of schema version 1 looks like
        session.execute(text("DROP TABLE image_folders"))
        session.get(SchemaInfo, 1).version = 1
    database.close()
    database = AnnotationDB(path)
    with database.read() as session:
        assert session.get(SchemaInfo, 1).version == 2
    admin, _ = add_user(database, "boss", admin=True)
    assert figure_image(database, admin, "fig0") is None
    with caplog.at_level(logging.WARNING, logger="vital"):
        warn_if_not_ready(database)
    assert "records no image folder" in caplog.text
    load_corpus(database, figures, candidates)
    assert figure_image(database, admin, "fig0") == (tmp_path / "corpus/images/xray.png").resolve()


# ---- authentication and CSRF ----------------------------------------------------------------------------


def test_every_route_except_login_needs_a_session(db: AnnotationDB) -> None:
    app = create_app(db)
    client = TestClient(app)
    checked = 0
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in ("/login", "/static") or not hasattr(route, "methods"):
            continue
        url = path.replace("{task_id}", "1").replace("{kind}", "compare").replace("{figure_id:path}", "fig0")
        for method in route.methods - {"HEAD"}:
            response = client.request(method, url, params={"kind": "compare"}, json={"choice": "A"})
            assert response.status_code == 401, (method, url, response.status_code)
            if url.startswith("/api/"):
                assert response.json()["detail"].startswith("Not signed in")
            checked += 1
    assert checked >= 10


def test_login_link_works_once_and_only_its_hash_is_stored(db: AnnotationDB, tmp_path: Path) -> None:
    user, created = add_user(db, "dr-ana")
    assert created
    token = issue_login_token(db, user)
    assert len(token) >= 40
    with db.read() as session:
        stored = [row.token_hash for row in session.query(LoginToken)]
    assert token not in stored and all(len(value) == 64 for value in stored)
    assert token.encode() not in (tmp_path / "annotations.db").read_bytes()

    client = TestClient(create_app(db))
    response = client.get(f"/login?token={token}", follow_redirects=False)
    assert response.status_code == 303
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    assert "httponly" in cookies["vital_session"] and "samesite=lax" in cookies["vital_session"]
    assert "httponly" not in cookies["csrf_token"] and "samesite=strict" in cookies["csrf_token"]
    assert client.get("/api/me").json()["name"] == "dr-ana"

    other = TestClient(create_app(db))
    assert other.get(f"/login?token={token}").status_code == 403
    assert other.get("/login?token=not-a-real-token").status_code == 403
    assert other.get("/api/me").status_code == 401


def test_state_changes_need_the_csrf_header(db: AnnotationDB) -> None:
    client, headers = client_for(db, "dr-ana")
    task = next_of(client, "compare").json()
    url = f"/api/tasks/{task['task_id']}/answer"
    assert client.post(url, json={"choice": "A"}).status_code == 403
    assert client.post(url, json={"choice": "A"}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/logout").status_code == 403
    assert client.post(url, json={"choice": "A"}, headers=headers).status_code == 200
    assert client.post("/logout", headers=headers).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_a_login_link_for_someone_else_asks_before_switching(db: AnnotationDB) -> None:
    from vital.annotate.auth import login_token_owner

    client, headers = client_for(db, "ana")
    ana_session = client.cookies["vital_session"]
    ben, _ = add_user(db, "ben")
    token = issue_login_token(db, ben)

    asked = client.get(f"/login?token={token}", follow_redirects=False)
    assert asked.status_code == 200 and "Sign in as ben?" in asked.text
    assert "You are signed in as <strong>ana</strong>" in asked.text and "set-cookie" not in asked.headers
    assert client.get("/api/me").json()["name"] == "ana" and login_token_owner(db, token).name == "ben"
    assert client.post("/login", json={"token": token}).status_code == 403  # the switch is a POST with CSRF
    assert login_token_owner(db, token).name == "ben"  # still unspent

    switched = client.post("/login", json={"token": token}, headers=headers)
    assert switched.status_code == 200 and switched.json() == {"name": "ben"}
    assert client.get("/api/me").json()["name"] == "ben"
    assert login_token_owner(db, token) is None
    old = TestClient(create_app(db), cookies={"vital_session": ana_session})
    assert old.get("/api/me").status_code == 401  # ana's session ended with the switch
    assert client.get(f"/login?token={token}").status_code == 403  # a spent link asks nothing
    new_headers = {"X-CSRF-Token": client.cookies["csrf_token"]}
    assert client.post("/login", json={"token": token}, headers=new_headers).status_code == 403

    # ben's own new link switches nothing: it just opens a new session for ben
    again = client.get(f"/login?token={issue_login_token(db, ben)}", follow_redirects=False)
    assert again.status_code == 303 and client.get("/api/me").json()["name"] == "ben"


def test_secure_cookies_can_be_forced_behind_a_proxy_that_says_nothing(db: AnnotationDB) -> None:
    def cookies(app, base_url: str = "http://testserver") -> dict[str, str]:
        user, _ = add_user(db, "ana")
        response = TestClient(app, base_url=base_url).get(
            f"/login?token={issue_login_token(db, user)}", follow_redirects=False
        )
        assert response.status_code == 303
        return {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}

    plain = cookies(create_app(db))
    assert not any("secure" in value for value in plain.values())
    forced = cookies(create_app(db, ServeConfig(secure_cookies=True)))
    assert "secure" in forced["vital_session"] and "secure" in forced["csrf_token"]
    assert "secure" in cookies(create_app(db), "https://testserver")["vital_session"]


def test_a_body_over_the_limit_is_413_and_a_strangers_body_is_never_parsed(db: AnnotationDB) -> None:
    client = TestClient(create_app(db, ServeConfig(max_body=1000)))
    headers = {"X-CSRF-Token": sign_in(client, db, "ana")}
    task = next_of(client, "compare").json()
    url = f"/api/tasks/{task['task_id']}/answer"
    declared = client.post(url, content=b'{"choice": "A", "comment": "' + b"x" * 2000 + b'"}', headers=headers)
    assert declared.status_code == 413 and "over the limit of 1000 bytes" in declared.json()["detail"]
    chunked = client.post(url, content=iter([b'{"choice": "A", "comment": "', b"x" * 1500, b'"}']), headers=headers)
    assert chunked.status_code == 413
    assert client.get(f"/api/tasks/{task['task_id']}").json()["answer"] is None
    assert client.post(url, json={"choice": "A", "comment": "x" * 900}, headers=headers).status_code == 200

    stranger = TestClient(create_app(db, ServeConfig(max_body=1000)))
    assert stranger.post(url, content=b"not json").status_code == 401  # refused before the body is read
    assert client.post(url, content=b"not json").status_code == 403  # no CSRF header: not read either
    assert client.post(url, content=b"not json", headers=headers).status_code == 422


def test_annotators_see_and_change_only_their_own_tasks(db: AnnotationDB) -> None:
    ana, ana_headers = client_for(db, "ana", overlap=2)
    ben, ben_headers = client_for(db, "ben", overlap=2)
    task = next_of(ana, "compare").json()
    url = f"/api/tasks/{task['task_id']}"
    assert ben.get(url).status_code == 404
    assert ben.post(url + "/answer", json={"choice": "B"}, headers=ben_headers).status_code == 404
    assert ben.get(f"/tasks/{task['task_id']}").status_code == 404
    assert ana.post(url + "/answer", json={"choice": "A"}, headers=ana_headers).status_code == 200
    assert ben.get("/api/admin/stats").status_code == 403
    assert ben.get("/admin").status_code == 403
    boss, _ = client_for(db, "boss", admin=True)
    stats = boss.get("/api/admin/stats").json()
    assert stats["answers"]["ana"]["compare"] == 1
    assert stats["annotators"]["ana"]["compare"] == {"answered": 1, "pending": 0}
    assert stats["annotators"]["ben"]["compare"] == {"answered": 0, "pending": 0}
    next_of(ben, "compare")
    assert boss.get("/api/admin/stats").json()["annotators"]["ben"]["compare"] == {
        "answered": 0,
        "pending": 1,
    }


# ---- routing ------------------------------------------------------------------------------------------


def test_routing_gives_each_item_to_overlap_annotators_never_twice_to_one(db: AnnotationDB) -> None:
    items_seen: dict[str, list[tuple]] = {}
    for name in ("ana", "ben", "cai"):
        client, headers = client_for(db, name, overlap=2)
        tasks = answer_all(client, headers, "compare", lambda task: {"choice": "A"})
        items_seen[name] = [(t["figure"]["id"], frozenset(c["id"] for c in t["candidates"])) for t in tasks]
        assert len(set(items_seen[name])) == len(items_seen[name])
    counts = Counter(item for seen in items_seen.values() for item in seen)
    assert len(counts) == 9 and set(counts.values()) == {2}
    assert len(items_seen["ana"]) == len(items_seen["ben"]) == 9 and items_seen["cai"] == []


def database_state(db: AnnotationDB) -> tuple:
    """Everything a request could change: tasks, places taken, sessions, spent login links."""
    from sqlalchemy import func, select

    from vital.annotate.db import Item, SessionRow

    with db.read() as session:
        return (
            session.query(Task).count(),
            session.scalar(select(func.sum(Item.assigned))),
            session.query(SessionRow).count(),
            session.query(LoginToken).filter(LoginToken.used_at.is_not(None)).count(),
        )


def test_no_get_changes_anything_and_handing_out_a_task_is_a_post_with_csrf(db: AnnotationDB) -> None:
    app = create_app(db)
    client = TestClient(app)
    headers = {"X-CSRF-Token": sign_in(client, db, "ana", admin=True)}
    ben, _ = add_user(db, "ben")
    before = database_state(db)
    assert before[0:2] == (0, 0)
    urls = [f"/login?token={issue_login_token(db, ben)}"]  # another user's link: it only asks
    for route in app.routes:
        if "GET" in getattr(route, "methods", ()) and route.path != "/login":
            urls.append(route.path.replace("{task_id}", "1").replace("{kind}", "demos")
                        .replace("{figure_id:path}", "fig0"))
    for url in urls + ["/annotate/compare", "/api/tasks/next?kind=demos"]:
        client.get(url, params={"kind": "demos"})
    assert database_state(db) == before
    assert client.get("/api/tasks/next?kind=demos").status_code == 422  # read as /api/tasks/{task_id}
    start = client.get("/annotate/demos", follow_redirects=False)
    assert start.status_code == 200 and 'data-start="demos"' in start.text

    assert client.post("/api/tasks/next?kind=demos").status_code == 403
    assert database_state(db) == before
    task = client.post("/api/tasks/next?kind=demos", headers=headers)
    assert task.status_code == 200 and database_state(db)[0:2] == (1, 1)
    opened = client.get("/annotate/demos", follow_redirects=False)  # now a GET shows that open task
    assert opened.status_code == 303 and opened.headers["location"] == f"/tasks/{task.json()['task_id']}"
    assert database_state(db)[0:2] == (1, 1)


def test_an_unanswered_task_comes_back_first(db: AnnotationDB) -> None:
    client, _ = client_for(db, "ana")
    first = next_of(client, "demos").json()
    assert next_of(client, "demos").json()["task_id"] == first["task_id"]
    assert 2 <= len(first["candidates"]) <= 4


def test_progress_counts_answered_open_and_available_items(db: AnnotationDB) -> None:
    client, headers = client_for(db, "ana", overlap=2)
    for _ in range(2):
        task = next_of(client, "compare").json()
        client.post(f"/api/tasks/{task['task_id']}/answer", json={"choice": "A"}, headers=headers)
    next_of(client, "compare")
    progress = client.get("/api/me").json()["progress"]
    assert progress["compare"] == {"answered": 2, "pending": 1, "available": 6, "remaining": 7}
    assert progress["demos"] == {"answered": 0, "pending": 0, "available": 3, "remaining": 3}
    assert "task 3 · 2 answered · 7 left" in client.get("/annotate/compare").text


def test_released_open_tasks_go_to_other_annotators(db: AnnotationDB) -> None:
    from vital.annotate.tasks import release_open_tasks

    ana, ana_headers = client_for(db, "ana", overlap=2)
    kept = next_of(ana, "demos").json()
    ana.post(f"/api/tasks/{kept['task_id']}/answer", json={"best": None, "acceptable": []}, headers=ana_headers)
    left = next_of(ana, "demos").json()
    ben, ben_headers = client_for(db, "ben", overlap=2)
    answer_all(ben, ben_headers, "demos", lambda task: {"best": None, "acceptable": []})
    cai, _ = client_for(db, "cai", overlap=2)
    first_for_cai = next_of(cai, "demos").json()  # fig2: the only item with a free place
    assert first_for_cai["figure"]["id"] not in (kept["figure"]["id"], left["figure"]["id"])

    assert release_open_tasks(db, "ana") == 1
    assert ana.get(f"/api/tasks/{left['task_id']}").status_code == 404
    assert release_open_tasks(db, "ana") == 0
    cai.post(
        f"/api/tasks/{first_for_cai['task_id']}/answer",
        json={"best": None, "acceptable": []},
        headers={"X-CSRF-Token": cai.cookies["csrf_token"]},
    )
    assert next_of(cai, "demos").json()["figure"]["id"] == left["figure"]["id"]
    with db.read() as session:
        slots = [(t.item_id, t.slot) for t in session.query(Task)]
    assert len(set(slots)) == len(slots)
    with pytest.raises(InputError, match="no annotator named 'zed'"):
        release_open_tasks(db, "zed")


def test_display_order_is_random_per_task_and_a_means_the_first_shown(db: AnnotationDB) -> None:
    orders = set()
    for name in [f"user{i}" for i in range(12)]:
        client, headers = client_for(db, name, overlap=12)
        task = next_of(client, "compare").json()
        shown = [c["id"] for c in task["candidates"]]
        orders.add(tuple(shown))
        client.post(f"/api/tasks/{task['task_id']}/answer", json={"choice": "A"}, headers=headers)
        with db.read() as session:
            stored = session.get(Task, task["task_id"])
            assert stored.display_order == shown and stored.label == shown[0]
    assert len(orders) == 2  # both orders occur (probability of failure 2 * 0.5**12)


# ---- answers --------------------------------------------------------------------------------------------


def test_submitting_twice_keeps_one_answer_and_revising_replaces_it(db: AnnotationDB) -> None:
    client, headers = client_for(db, "ana")
    task = next_of(client, "compare").json()
    url = f"/api/tasks/{task['task_id']}/answer"
    assert client.post(url, json={"choice": "B"}, headers=headers).json()["changed"] is True
    assert client.post(url, json={"choice": "B"}, headers=headers).json()["changed"] is False
    revised = client.post(url, json={"choice": "tie", "comment": " unsure "}, headers=headers)
    assert revised.json()["changed"] is True
    with db.read() as session:
        rows = session.query(Task).filter(Task.answered_at.is_not(None)).all()
    assert len(rows) == 1 and rows[0].label == "tie" and rows[0].comment == "unsure" and rows[0].revisions == 1
    assert client.get(f"/api/tasks/{task['task_id']}").json()["answer"]["choice"] == "tie"


def test_a_task_id_no_task_can_have_is_404(db: AnnotationDB) -> None:
    client, headers = client_for(db, "ana")
    next_of(client, "compare")
    for task_id in ("99999999999999999999999", str(2**31), str(2**63), "0", "-1", "-99999999999999999999999"):
        assert client.get(f"/api/tasks/{task_id}").status_code == 404, task_id
        assert client.get(f"/tasks/{task_id}").status_code == 404, task_id
        answer = client.post(f"/api/tasks/{task_id}/answer", json={"choice": "A"}, headers=headers)
        assert answer.status_code == 404 and answer.json()["detail"] == f"no task {task_id} for you"


def test_invalid_answers_and_tasks_are_clear_4xx(db: AnnotationDB) -> None:
    client, headers = client_for(db, "ana")
    compare = next_of(client, "compare").json()
    demos = next_of(client, "demos").json()
    url = f"/api/tasks/{compare['task_id']}/answer"

    response = client.post(url, json={"choice": "C"}, headers=headers)
    assert response.status_code == 422 and "'choice' must be one of A, B, tie, both_bad" in response.json()["detail"]
    assert "unexpected field 'best'" in client.post(url, json={"best": "x"}, headers=headers).json()["detail"]
    assert client.post(url, json=["A"], headers=headers).status_code == 422
    assert client.post("/api/tasks/999999/answer", json={"choice": "A"}, headers=headers).status_code == 404
    assert client.post("/api/tasks/abc/answer", json={"choice": "A"}, headers=headers).status_code == 422
    assert next_of(client, "rank").status_code == 422

    demos_url = f"/api/tasks/{demos['task_id']}/answer"
    stranger = client.post(demos_url, json={"best": "fig9-c0", "acceptable": []}, headers=headers)
    assert stranger.status_code == 422 and "not part of task" in stranger.json()["detail"]
    ids = [c["id"] for c in demos["candidates"]]
    no_best = client.post(demos_url, json={"best": None, "acceptable": ids[:1]}, headers=headers)
    assert no_best.status_code == 422
    ok = client.post(demos_url, json={"best": ids[1], "acceptable": [ids[0]]}, headers=headers)
    assert ok.status_code == 200 and set(ok.json()["answer"]["acceptable"]) == {ids[0], ids[1]}
    assert client.post(demos_url, json={"best": None, "acceptable": []}, headers=headers).status_code == 200


# ---- images ---------------------------------------------------------------------------------------------


def see_every_figure(client: TestClient, headers: dict) -> dict[str, dict]:
    """Answer every demonstrations task (one per figure with candidates): the tasks shown, by figure id."""
    shown = answer_all(client, headers, "demos", lambda task: {"best": None, "acceptable": []})
    return {task["figure"]["id"]: task for task in shown}


def test_images_are_served_by_figure_id_and_dicom_has_window_presets(db: AnnotationDB, tmp_path: Path) -> None:
    client, headers = client_for(db, "ana")
    shown = see_every_figure(client, headers)
    png = client.get("/images/fig0")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (tmp_path / "corpus/images/xray.png").read_bytes()
    default = client.get("/images/fig1")
    lung = client.get("/images/fig1?window=lung")
    assert default.headers["content-type"] == lung.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(default.content)).size == (128, 128)
    assert default.content != lung.content
    assert client.get("/images/fig1?window=rainbow").status_code == 422
    assert client.get("/images/fig2").status_code == 404  # a figure without an image
    assert "lung" in shown["fig1"]["figure"]["windows"] and shown["fig1"]["figure"]["image_url"] == "/images/fig1"
    assert shown["fig0"]["figure"]["windows"] == [] and shown["fig2"]["figure"]["image_url"] is None


def test_no_path_from_a_request_reaches_the_file_system(db: AnnotationDB, monkeypatch) -> None:
    import vital.annotate.app as app_module

    opened = []
    real = app_module.browser_image
    monkeypatch.setattr(app_module, "browser_image", lambda path, window: opened.append(path) or real(path, window))
    client, headers = client_for(db, "ana")
    see_every_figure(client, headers)
    attempts = [
        "/images/../../etc/passwd",
        "/images/..%2F..%2Fetc%2Fpasswd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images/%252e%252e%252fetc%252fpasswd",
        "/images//etc/passwd",
        "/images/fig0/../../../etc/passwd",
        "/images/C:%5CWindows%5Cwin.ini",
    ]
    for attempt in attempts:
        response = client.get(attempt)
        assert response.status_code in (401, 404), attempt
        assert b"root:" not in response.content
    assert opened == []
    assert client.get("/images/fig0").status_code == 200
    assert len(opened) == 1 and opened[0].endswith("corpus/images/xray.png")


def test_images_only_from_the_image_folders_and_only_for_ones_own_tasks(tmp_path: Path, caplog) -> None:
    figures, candidates = make_corpus(tmp_path / "corpus")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, dtype="uint8")).save(outside / "secret.png")
    images = tmp_path / "corpus/images"
    (images / "linked.png").symlink_to(outside / "secret.png")  # a link out of the image folder
    (images / "alias.png").symlink_to(images / "xray.png")  # a link that stays inside
    extra = {"linked": "images/linked.png", "elsewhere": str(outside / "secret.png"), "alias": "images/alias.png"}
    with figures.open("a") as fig_out, candidates.open("a") as cand_out:
        for figure_id, image in extra.items():
            fig_out.write(json.dumps({"id": figure_id, "image": image, "caption": "A test image."}) + "\n")
            for k in range(2):
                turns = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": f"{k}"}]
                cand_out.write(json.dumps({"id": f"{figure_id}-c{k}", "figure_id": figure_id,
                                           "conversations": turns}) + "\n")
    database = AnnotationDB(tmp_path / "a.db")
    with caplog.at_level(logging.WARNING, logger="vital"):
        loaded = load_corpus(database, figures, candidates)
    assert loaded.images_outside == 2 and "2 figure images are outside the image folders" in caplog.text

    ana, headers = client_for(database, "ana")
    ben, _ = client_for(database, "ben")
    boss, _ = client_for(database, "boss", admin=True)
    shown = see_every_figure(ana, headers)
    assert ana.get("/images/fig0").status_code == 200 and ana.get("/images/alias").status_code == 200
    for figure_id in ("linked", "elsewhere"):
        assert ana.get(f"/images/{figure_id}").status_code == 404
        assert boss.get(f"/images/{figure_id}").status_code == 404
        assert shown[figure_id]["figure"]["image_url"] is None  # the page says there is no image
    assert ben.get("/images/fig0").status_code == 404  # not one of ben's tasks
    assert boss.get("/images/fig0").status_code == 200  # administrators see every figure

    # an image replaced by a link out of the folder after loading is refused when it is asked for
    (images / "xray.png").rename(images / "xray-original.png")
    (images / "xray.png").symlink_to(outside / "secret.png")
    assert ana.get("/images/fig0").status_code == 404
    # naming the other folder when loading allows it
    assert load_corpus(database, figures, candidates, images=[outside]).image_folders == sorted(
        [images.parent.resolve(), outside.resolve()], key=str)
    assert ana.get("/images/linked").content == (outside / "secret.png").read_bytes()


# ---- pages ----------------------------------------------------------------------------------------------


def test_pages_render_with_security_headers(db: AnnotationDB) -> None:
    client, _ = client_for(db, "ana", admin=True)
    home = client.get("/")
    assert home.status_code == 200 and "Compare candidates" in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["x-frame-options"] == "DENY" and home.headers["referrer-policy"] == "no-referrer"
    next_of(client, "compare")
    page = client.get("/annotate/compare")  # the open task
    assert page.status_code == 200 and 'id="task-data"' in page.text and "A is better" in page.text
    assert "<script>" not in page.text  # no inline scripts: the CSP forbids them
    start = client.get("/annotate/demos")  # no open task: a page whose button asks for one
    assert start.status_code == 200 and 'data-start="demos"' in start.text and "3 left to do" in start.text
    assert "Krippendorff" in client.get("/admin").text
    assert "Please sign in" in TestClient(create_app(db)).get("/").text
    forbidden = TestClient(create_app(db))
    sign_in(forbidden, db, "ben")
    assert "administrators only" in forbidden.get("/admin").text and "<html" in forbidden.get("/admin").text


def test_the_server_log_filter_removes_login_tokens() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/login?token=SECRET-123&x=1", "1.1", 303),
        None,
    )
    RedactTokens().filter(record)
    assert "SECRET-123" not in record.getMessage() and "token=[redacted]&x=1" in record.getMessage()


# ---- agreement and exports ---------------------------------------------------------------------------------


def test_cohen_kappa_matches_a_hand_computed_value() -> None:
    # 10 items: observed agreement 0.7; marginals ana (6 A, 4 B), ben (5 A, 5 B): expected 0.5 -> kappa 0.4
    ana = list("AAAAAABBBB")
    ben = list("AAAABBBBBA")
    assert cohen_kappa(ana, ben) == pytest.approx(0.4)
    # three labels: observed 5/6, expected (2*2 + 2*1 + 2*3) / 36 = 1/3 -> kappa (1/2) / (2/3) = 0.75
    assert cohen_kappa(list("AABBCC"), list("AABCCC")) == pytest.approx(0.75)
    assert cohen_kappa(list("AB"), list("AB")) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(list("AA"), list("AA")))


def test_krippendorff_alpha_reproduces_the_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data, 4 coders, 12 units.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[c[u] for c in coders if c[u] is not None] for u in range(12)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha_nominal([["a"]]))


def test_exports_and_agreement_on_hand_made_answers(db: AnnotationDB, tmp_path: Path) -> None:
    """Two annotators answer by candidate id (whatever the display order); check every number."""
    ana_plan = {
        "fig0-c0|fig0-c1": "fig0-c0",
        "fig0-c0|fig0-c2": "fig0-c0",
        "fig0-c1|fig0-c2": "tie",
        "fig1-c0|fig1-c1": "fig1-c1",
        "fig1-c0|fig1-c2": "fig1-c0",
        "fig1-c1|fig1-c2": "both_bad",
        "fig2-c0|fig2-c1": "fig2-c0",
        "fig2-c0|fig2-c2": "fig2-c2",
        "fig2-c1|fig2-c2": "fig2-c1",
    }
    ben_plan = dict(ana_plan, **{"fig0-c1|fig0-c2": "fig0-c1", "fig2-c1|fig2-c2": "fig2-c2"})

    def by_plan(plan):
        def choose(task):
            shown = [c["id"] for c in task["candidates"]]
            wanted = plan["|".join(sorted(shown))]
            return {"choice": {shown[0]: "A", shown[1]: "B"}.get(wanted, wanted)}

        return choose

    def demos_plan(best):
        def choose(task):
            pick = best[task["figure"]["id"]]
            return {"best": pick, "acceptable": [pick] if pick else []}

        return choose

    for name, plan, best in [
        ("ana", ana_plan, {"fig0": "fig0-c1", "fig1": "fig1-c0", "fig2": None}),
        ("ben", ben_plan, {"fig0": "fig0-c1", "fig1": "fig1-c2", "fig2": None}),
    ]:
        client, headers = client_for(db, name, overlap=2)
        answer_all(client, headers, "compare", by_plan(plan))
        answer_all(client, headers, "demos", demos_plan(best))

    report = agreement_report(db)
    assert report.answers == {"ana": {"compare": 9, "demos": 3}, "ben": {"compare": 9, "demos": 3}}
    compare = next(p for p in report.pairs if p.kind == "compare")
    assert (compare.first, compare.second, compare.items) == ("ana", "ben", 9)
    assert compare.observed == pytest.approx(7 / 9)
    ana_labels = [ana_plan[k] for k in sorted(ana_plan)]
    ben_labels = [ben_plan[k] for k in sorted(ben_plan)]
    assert compare.kappa == pytest.approx(cohen_kappa(ana_labels, ben_labels))
    alpha = next(k for k in report.overall if k.kind == "compare")
    assert alpha.items_with_overlap == 9
    assert alpha.alpha == pytest.approx(krippendorff_alpha_nominal(list(zip(ana_labels, ben_labels, strict=True))))
    demos_pair = next(p for p in report.pairs if p.kind == "demos")
    assert demos_pair.observed == pytest.approx(2 / 3)

    summary = export_preferences(db, tmp_path / "prefs.jsonl", answers="compare")
    prefs = list(read_records(tmp_path / "prefs.jsonl", Preference))
    # ana: 7 decisive of 9 (tie, both_bad); ben: 8 decisive (both_bad)
    assert summary.records == len(prefs) == 15
    assert summary.skipped == {"compare:tie": 1, "compare:both_bad": 2}
    assert all(p.source == "human" and p.annotator in ("ana", "ben") for p in prefs)
    assert ("fig1-c1", "fig1-c0", "ana") in {(p.chosen, p.rejected, p.annotator) for p in prefs}
    assert not any(p.chosen == p.rejected for p in prefs)

    all_prefs = export_preferences(db, tmp_path / "all.jsonl")
    # demos: fig0 and fig1 give best > 2 others per annotator (4 answers x 2 pairs); fig2 "none" gives none
    assert all_prefs.records == 15 + 8 and all_prefs.skipped["demos:none"] == 2

    demos = export_demonstrations(db, tmp_path / "demos.jsonl")
    figures = list(read_records(tmp_path / "demos.jsonl", Figure))
    assert demos.records == 2 and [f.id for f in figures] == ["fig0", "fig1"]
    assert figures[0].conversations[1].value == "Candidate 1 describes figure 0."
    assert figures[0].meta["demonstration"]["chosen_by"] == ["ana", "ben"]
    assert figures[1].meta["demonstration"]["candidate_id"] == "fig1-c0"  # 1-1 vote: earlier candidate wins
    assert Path(figures[0].image).is_absolute() and Path(figures[0].image).exists()


def test_agreement_with_judge_scores(db: AnnotationDB) -> None:
    client, headers = client_for(db, "ana")

    def prefer_lower_index(task):
        shown = [c["id"] for c in task["candidates"]]
        return {"choice": "A" if shown[0] < shown[1] else "B"}

    answer_all(client, headers, "compare", prefer_lower_index)
    # the judge prefers the lower index on fig0 and fig1, the higher on fig2 and scores fig1-c1 = fig1-c2
    scores = {f"fig{f}-c{i}": (10 - i if f < 2 else i) for f in range(3) for i in range(3)}
    scores["fig1-c2"] = scores["fig1-c1"]
    report = agreement_report(db, judge_scores=scores)
    overall = next(j for j in report.judge if j.kind == "compare" and j.annotator == "all")
    assert (overall.compared, overall.agree, overall.judge_ties) == (8, 5, 1)

    answer_all(client, headers, "demos", lambda task: {"best": task["candidates"][0]["id"], "acceptable": []})
    scores.update({"fig0-c0": 5, "fig0-c1": 5, "fig0-c2": 5})  # fig0: the judge cannot tell them apart
    demos = next(j for j in agreement_report(db, judge_scores=scores).judge if j.kind == "demos")
    assert demos.compared + demos.judge_ties == 3 and demos.judge_ties == 1


# ---- command line ---------------------------------------------------------------------------------------


def test_cli_add_user_prints_a_link_last_and_export_and_stats_work(db: AnnotationDB, tmp_path: Path) -> None:
    from vital.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["annotate", "add-user", "dr-kim", "--db", db.url, "--port", "8123"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:8123/login?token=")
    client = TestClient(create_app(db))
    assert client.get(link.replace("http://127.0.0.1:8123", "")).status_code == 200
    headers = {"X-CSRF-Token": client.cookies["csrf_token"]}
    answer_all(client, headers, "compare", lambda task: {"choice": "A"})

    out = tmp_path / "prefs.jsonl"
    result = runner.invoke(app, ["annotate", "export", "--db", db.url, "--kind", "preferences", "--out", str(out)])
    assert result.exit_code == 0 and "wrote 9 preference pairs" in result.stdout
    assert len(list(read_records(out, Preference))) == 9
    result = runner.invoke(app, ["annotate", "stats", "--db", db.url, "--json"])
    assert json.loads(result.stdout)["answers"]["dr-kim"]["compare"] == 9
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        "".join(
            json.dumps({"candidate_id": f"fig{f}-c{i}", "score": 9 - i, "source": "model"}) + "\n"
            for f in range(3)
            for i in range(3)
        )
    )
    result = runner.invoke(app, ["annotate", "stats", "--db", db.url, "--scores", str(scores)], terminal_width=160)
    assert result.exit_code == 0 and "Answers per annotator" in result.stdout
    assert "Agreement with the model judge" in result.stdout


def never_serve(monkeypatch) -> None:
    """Make ``vital annotate serve`` fail instead of serving (a test expecting an error must not hang)."""
    import vital.annotate

    monkeypatch.setattr(vital.annotate, "serve", lambda *args: pytest.fail("served"), raising=False)


def test_annotate_commands_refuse_bad_input_with_one_line_naming_the_file(
    db: AnnotationDB, tmp_path: Path, monkeypatch
) -> None:
    from vital.cli import app

    never_serve(monkeypatch)

    figures, candidates = tmp_path / "corpus/figures.jsonl", tmp_path / "corpus/candidates.jsonl"
    missing, folder, empty = tmp_path / "missing.jsonl", tmp_path / "folder", tmp_path / "empty.jsonl"
    folder.mkdir()
    empty.write_text("")
    kept = tmp_path / "kept.jsonl"
    kept.write_text("an earlier export\n")
    loading = ["--db", db.url]
    cases = []
    for bad in (missing, folder, empty):
        for command in ("load", "serve"):
            cases.append(([command, *loading, "--figures", bad, "--candidates", candidates], bad))
            cases.append(([command, *loading, "--figures", figures, "--candidates", bad], bad))
        cases.append((["stats", *loading, "--scores", bad], bad))
    cases += [
        (["load", *loading, "--figures", figures, "--candidates", candidates, "--images", empty], empty),
        (["load", *loading, "--figures", figures, "--candidates", candidates, "--images", missing], missing),
        (["export", *loading, "--kind", "preferences", "--out", folder], folder),
        (["export", *loading, "--kind", "demos", "--out", folder], folder),
        (["stats", *loading, "--plot", folder], folder),
        (["export", "--db", tmp_path / "typo.db", "--kind", "demos", "--out", kept], tmp_path / "typo.db"),
    ]
    before = database_state(db)
    runner = CliRunner()
    for args, named in cases:
        result = runner.invoke(app, ["annotate", *map(str, args)])
        assert isinstance(result.exception, InputError), (args, result.output, result.exception)
        line = f"error: {result.exception}"  # what `vital` prints before exiting with status 2
        assert "\n" not in line and line.startswith(f"error: {named}: "), (args, line)
    assert database_state(db) == before and kept.read_text() == "an earlier export\n"
    assert not (tmp_path / "typo.db").exists()

    process = subprocess.run(  # the whole contract once, through the installed command
        [sys.executable, "-m", "vital", "annotate", "load", "--db", db.url, "--figures", str(empty),
         "--candidates", str(candidates)], capture_output=True, text=True)
    assert process.returncode == 2 and process.stderr == f"error: {empty}: has no records\n"


def test_serve_and_add_user_flags_come_from_serve_config(db: AnnotationDB, monkeypatch) -> None:
    from vital.cli import app

    never_serve(monkeypatch)

    runner = CliRunner()
    for flag, value in [("--max-body", "0"), ("--overlap", "0"), ("--port", "70000"), ("--public-url", "example.org")]:
        result = runner.invoke(app, ["annotate", "serve", "--db", db.url, flag, value])
        assert isinstance(result.exception, InputError) and result.exception.field == flag, (flag, result.output)
    result = runner.invoke(app, ["annotate", "add-user", "dr-kim", "--db", db.url,
                                 "--public-url", "https://annotate.example.org/"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("https://annotate.example.org/login?token=")
    assert ServeConfig(host="::1", port=9000).url == "http://[::1]:9000"


# ---- a real server, many clients at once ------------------------------------------------------------------


class LiveServer:
    """The app under uvicorn on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, app, *, log_level: str = "warning") -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def test_a_real_server_logs_no_login_token(db: AnnotationDB) -> None:
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    with LiveServer(create_app(db), log_level="info") as live:
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            user, _ = add_user(db, "ana")
            token = issue_login_token(db, user)
            assert httpx.get(login_url(live.url, token)).status_code == 303
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    assert any("/login?token=[redacted]" in line for line in records), records
    assert not any(token in line for line in records)


class ServerProcess:
    """``vital annotate serve`` as a child process on a free port of 127.0.0.1."""

    def __init__(self, db: AnnotationDB, *flags: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "vital", "annotate", "serve", "--db", db.url, "--port", str(self.port),
                     *flags]

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                httpx.get(self.url + "/login", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)


def post_raw(port: int, path: str, size: int, *, chunked: bool, headers: str = "") -> int:
    """POST ``size`` bytes the way an attacker would (sending on while the server answers); the status."""
    block = b"x" * (1 << 20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{framing}\r\n\r\n".encode())

        def send_body() -> None:
            try:
                for _ in range(size // len(block)):
                    sock.sendall(b"%x\r\n%b\r\n" % (len(block), block) if chunked else block)
                sock.sendall(b"0\r\n\r\n" if chunked else b"")
            except OSError:  # the server refused and closed: what it should do
                pass

        sender = threading.Thread(target=send_body)
        sender.start()
        reply = b""
        while b"\r\n" not in reply and (data := sock.recv(65536)):
            reply += data
        sender.join()
    return int(reply.split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_refused_bodies_do_not_raise_the_servers_peak_memory(db: AnnotationDB) -> None:
    big, warm_up = 50 << 20, 2 << 20
    with ServerProcess(db) as server:  # the default limit: 1 MB
        client = httpx.Client(base_url=server.url, timeout=30)
        csrf = sign_in(client, db, "ana")
        task_id = next_of(client, "compare").json()["task_id"]
        cookies = f"vital_session={client.cookies['vital_session']}; csrf_token={csrf}"
        signed = f"Cookie: {cookies}\r\nX-CSRF-Token: {csrf}\r\n"
        answer = f"/api/tasks/{task_id}/answer"
        requests = [  # (path, chunked, headers, expected status)
            (answer, False, signed, 413),
            (answer, True, signed, 413),  # no Content-Length: counted as it arrives
            (answer, False, "", 413),
            (answer, True, "", 401),  # a stranger's body is never read
            ("/login", True, signed, 413),
        ]
        for path, chunked, headers, status in requests:  # warm up every code path with small bodies
            assert post_raw(server.port, path, warm_up, chunked=chunked, headers=headers) == status
        before = server.peak_rss_mb()
        for path, chunked, headers, status in requests:
            assert post_raw(server.port, path, big, chunked=chunked, headers=headers) == status, (path, chunked)
        growth = server.peak_rss_mb() - before
        reply = client.post(answer, json={"choice": "A"}, headers={"X-CSRF-Token": csrf})
        assert reply.status_code == 200  # the server is fine
        client.close()
    # 250 MB were sent; a server that buffered one of them would have grown by more than 50 MB
    assert growth < 10, f"peak memory grew by {growth:.1f} MB"


def test_parallel_clients_lose_and_duplicate_no_answer(tmp_path: Path) -> None:
    database = AnnotationDB(tmp_path / "load.db")
    load_corpus(database, *make_corpus(tmp_path / "corpus", figures=12, candidates_per_figure=3))
    overlap, names = 2, ["ana", "ben", "cai", "dee"]
    accepted: dict[int, set[str]] = {}
    lock = threading.Lock()

    with LiveServer(create_app(database, ServeConfig(overlap=overlap))) as live:
        tabs = []
        for name in names:
            first = httpx.Client(base_url=live.url, timeout=30)
            csrf = sign_in(first, database, name)
            second = httpx.Client(base_url=live.url, timeout=30, cookies=first.cookies)  # a second tab
            tabs += [(first, csrf), (second, csrf)]

        def post(client, task_id, choice, csrf):
            response = client.post(
                f"/api/tasks/{task_id}/answer", json={"choice": choice}, headers={"X-CSRF-Token": csrf}
            )
            assert response.status_code == 200, response.text
            with lock:
                accepted.setdefault(task_id, set()).add(choice)

        def work(tab_number: int) -> int:
            client, csrf = tabs[tab_number]
            rng = random.Random(tab_number)
            done = 0
            with ThreadPoolExecutor(2) as clicks:
                while (response := next_of(client, "compare")).status_code == 200:
                    task_id = response.json()["task_id"]
                    choice = rng.choice(["A", "B", "tie", "both_bad"])
                    if rng.random() < 0.3:  # a double click: the same answer twice at once
                        twice = [clicks.submit(post, client, task_id, choice, csrf) for _ in range(2)]
                        [future.result() for future in twice]
                    else:
                        post(client, task_id, choice, csrf)
                    if rng.random() < 0.1:  # a retried POST after a timeout
                        post(client, task_id, choice, csrf)
                    done += 1
            assert response.status_code == 204
            return done

        with ThreadPoolExecutor(len(tabs)) as pool:
            list(pool.map(work, range(len(tabs))))
        for client, _ in tabs:
            client.close()

    assert_answered_exactly_once(database, accepted, overlap=overlap, items=36)


def assert_answered_exactly_once(
    database: AnnotationDB, accepted: dict[int, set[str]], *, overlap: int, items: int
) -> None:
    """Every item went to ``overlap`` annotators, each answered once, with one of the answers they sent."""
    with database.read() as session:
        tasks = session.query(Task).all()
    answered = [t for t in tasks if t.answered_at is not None]
    assert len(answered) == len(tasks) == len(accepted) == items * overlap
    for task in answered:
        assert task.answer["choice"] in accepted[task.id]
    assert set(Counter(t.item_id for t in tasks).values()) == {overlap}
    assert len({(t.item_id, t.user_id) for t in tasks}) == len(tasks)
    assert len({(t.item_id, t.slot) for t in tasks}) == len(tasks)


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL URL: $VITAL_TEST_POSTGRES_URL, or a throwaway local cluster when initdb is installed."""
    import os
    import subprocess
    import tempfile

    if os.environ.get("VITAL_TEST_POSTGRES_URL"):  # a database for tests only: its tables are dropped
        from sqlalchemy import create_engine

        from vital.annotate.db import Base

        engine = create_engine(os.environ["VITAL_TEST_POSTGRES_URL"])
        Base.metadata.drop_all(engine)
        engine.dispose()
        yield os.environ["VITAL_TEST_POSTGRES_URL"]
        return
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl) and VITAL_TEST_POSTGRES_URL is not set")
    pytest.importorskip("psycopg")
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="vital-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    run = lambda *args: subprocess.run([*as_owner, *args], check=True, capture_output=True)  # noqa: E731
    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        run(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -h 127.0.0.1 -k {folder} -F",
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a local PostgreSQL cluster ({exc})")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_owner, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_routing_answers_and_exports_under_parallel_annotators(postgres_url, tmp_path: Path) -> None:
    from vital.annotate import next_task, submit_answer

    database = AnnotationDB(postgres_url)
    figures, candidates = make_corpus(tmp_path, figures=12, candidates_per_figure=3)
    assert load_corpus(database, figures, candidates).new_items == {"compare": 36, "demos": 12}
    assert load_corpus(database, figures, candidates).new_items == {"compare": 0, "demos": 0}
    users = [add_user(database, name)[0] for name in ("ana", "ben", "cai", "dee")]
    accepted: dict[int, set[str]] = {}
    lock = threading.Lock()

    def work(worker: int) -> None:  # two workers per annotator: two tabs
        user, rng = users[worker // 2], random.Random(worker)
        while (task_id := next_task(database, user, "compare", overlap=2)) is not None:
            choice = rng.choice(["A", "B", "tie", "both_bad"])
            for _ in range(rng.choice([1, 2])):
                submit_answer(database, user, task_id, {"choice": choice})
            with lock:
                accepted.setdefault(task_id, set()).add(choice)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert_answered_exactly_once(database, accepted, overlap=2, items=36)
    assert sum(agreement_report(database).answers[name]["compare"] for name in ("ana", "ben", "cai", "dee")) == 72
    with database.read() as session:
        decisive = session.query(Task).filter(Task.label.not_in(["tie", "both_bad"])).count()
    assert export_preferences(database, tmp_path / "prefs.jsonl", answers="compare").records == decisive > 0


# ---- done when: two annotators with overlap 2 on the demo workspace --------------------------------------


def _text_length(candidate: dict) -> int:
    return sum(len(turn["value"]) for turn in candidate["conversations"])


def _prefer_longer(*, tie_every: int = 0):
    """A deterministic annotator: prefers the longer conversation; with ``tie_every``, calls some ties."""
    seen = Counter()

    def choose(task: dict) -> dict:
        seen["n"] += 1
        candidates = task["candidates"]
        if task["kind"] == "demos":
            best = max(candidates, key=_text_length)["id"]
            return {"best": best, "acceptable": [best]}
        if tie_every and seen["n"] % tie_every == 0:
            return {"choice": "tie"}
        return {"choice": "A" if _text_length(candidates[0]) >= _text_length(candidates[1]) else "B"}

    return choose


def test_two_annotators_with_overlap_two_on_the_demo_workspace(tmp_path: Path) -> None:
    from vital.cli import app as cli
    from vital.demo.corpus import build_corpus
    from vital.figures import ImportConfig, import_figures

    runner = CliRunner()
    build_corpus(tmp_path)
    figures, candidates = tmp_path / "figures.jsonl", tmp_path / "candidates.jsonl"
    import_figures(tmp_path / "corpus.csv", figures, ImportConfig(require_images=True))
    result = runner.invoke(
        cli, ["generate", str(figures), "--out", str(candidates), "--backend", "caption", "--candidates", "3"]
    )
    assert result.exit_code == 0, result.output

    database = AnnotationDB(tmp_path / "annotations.db")
    loaded = load_corpus(database, figures, candidates)
    assert loaded.total_items["compare"] == 3 * loaded.figures
    for name, rule in [("ana", _prefer_longer()), ("ben", _prefer_longer(tie_every=5))]:
        client, headers = client_for(database, name, overlap=2)
        for kind in ("compare", "demos"):
            assert len(answer_all(client, headers, kind, rule)) == loaded.total_items[kind]

    out = tmp_path / "preferences.jsonl"
    result = runner.invoke(
        cli, ["annotate", "export", "--db", database.url, "--kind", "preferences", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    preferences = list(read_records(out, Preference))
    assert {p.annotator for p in preferences} == {"ana", "ben"} and all(p.source == "human" for p in preferences)

    result = runner.invoke(cli, ["annotate", "stats", "--db", database.url, "--json"])
    stats = json.loads(result.stdout)
    pair = next(p for p in stats["pairs"] if p["kind"] == "compare")
    assert (pair["first"], pair["second"], pair["items"]) == ("ana", "ben", loaded.total_items["compare"])
    assert 0 < pair["kappa"] < 1 and 0 < stats["overall"][0]["alpha"] < 1
    plot = tmp_path / "agreement.png"
    result = runner.invoke(cli, ["annotate", "stats", "--db", database.url, "--plot", str(plot)], terminal_width=160)
    assert result.exit_code == 0 and "ana · ben" in result.stdout
    assert Image.open(plot).size[0] > 600

    if runner.invoke(cli, ["selector", "train", "--help"]).exit_code != 0:
        pytest.skip("`vital selector train` is not available yet; the export above is checked as records")
    model = tmp_path / "selector"
    result = runner.invoke(
        cli,
        [
            "selector",
            "train",
            "--candidates",
            str(candidates),
            "--figures",
            str(figures),
            "--preferences",
            str(out),
            "--out",
            str(model),
        ],
    )
    assert result.exit_code == 0, result.output
    pairs = json.loads((model / "metrics.json").read_text())["pairs"]
    assert pairs["human_pairs_unknown_candidates"] == 0 and pairs["human_train"] > 0


def test_export_and_stats_refuse_a_database_that_does_not_exist(tmp_path):
    from typer.testing import CliRunner

    from vital.cli import app

    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    for args in (["annotate", "export", "--db", missing, "--kind", "preferences", "--out", str(tmp_path / "p.jsonl")],
                 ["annotate", "stats", "--db", missing]):
        with pytest.raises(InputError, match="no annotation database"):
            CliRunner().invoke(app, args, catch_exceptions=False)
    assert not (tmp_path / "typo.db").exists()
