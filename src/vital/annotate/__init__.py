"""Clinician annotation: a small web app for choosing demonstrations and comparing candidates.

>>> db = AnnotationDB("sqlite:///annotations.db")
>>> load_corpus(db, "figures.jsonl", "candidates.jsonl")
>>> user, _ = add_user(db, "dr-lee")
>>> print(login_url("http://127.0.0.1:8000", issue_login_token(db, user)))
>>> app = create_app(db, overlap=2)            # serve with uvicorn
>>> export_preferences(db, "preferences.jsonl")  # for `vital selector train --preferences`
>>> export_demonstrations(db, "demos.jsonl")     # for `vital generate --demos`
>>> agreement_report(db)                         # kappa per annotator pair, Krippendorff's alpha

The web app itself (``create_app``) needs the ``web`` extra (FastAPI, uvicorn, Jinja2).
"""

from __future__ import annotations

from typing import Any

from vital.annotate.agreement import AgreementReport, agreement_report
from vital.annotate.auth import add_user, issue_login_token, list_users, login_url
from vital.annotate.db import AnnotationDB
from vital.annotate.export import export_demonstrations, export_preferences
from vital.annotate.loading import load_corpus
from vital.annotate.tasks import next_task, submit_answer, task_view

__all__ = [
    "AgreementReport",
    "AnnotationDB",
    "add_user",
    "agreement_report",
    "create_app",
    "export_demonstrations",
    "export_preferences",
    "issue_login_token",
    "list_users",
    "load_corpus",
    "login_url",
    "next_task",
    "submit_answer",
    "task_view",
]


def create_app(db: AnnotationDB, *, overlap: int = 1) -> Any:
    """The FastAPI app (imported lazily: FastAPI is only needed to serve)."""
    from vital.annotate.app import create_app as make

    return make(db, overlap=overlap)
