"""Clinician annotation: a small web app for choosing demonstrations and comparing candidates.

>>> from vital.annotate import AnnotationDB, ServeConfig, add_user, issue_login_token, login_url, load_corpus
>>> from vital.annotate import agreement_report, annotation_counts, create_app, export_demonstrations
>>> from vital.annotate import export_preferences
>>> load_corpus("annotations.db", "figures.jsonl", "candidates.jsonl")   # idempotent
>>> db = AnnotationDB("annotations.db")
>>> user, _ = add_user(db, "dr-lee")
>>> print(login_url(ServeConfig().url, issue_login_token(db, user)))
>>> app = create_app(db, ServeConfig(overlap=2))                          # serve with uvicorn
>>> annotation_counts(db)                          # answers, preference pairs, demonstrations so far
>>> export_preferences(db, "preferences.jsonl")    # for `vital selector train --preferences`
>>> export_demonstrations(db, "demos.jsonl")       # for `vital generate --demos`
>>> agreement_report(db)                           # kappa per annotator pair, Krippendorff's alpha

Loading, counting, exports, agreement, ``create_app`` and ``serve`` take
``db`` as an open :class:`AnnotationDB`, a SQLite file path or a database URL
(``postgresql://...``); the user and task functions take an open one.

Names are imported on first use: the web app (``create_app``, ``serve``)
needs the ``web`` extra (FastAPI, uvicorn, Jinja2), and the settings
(``ServeConfig``, ``ExportConfig``) import no database code.
"""

from __future__ import annotations

from vital.lazy import lazy_attributes

_API = {
    "ServeConfig": "vital.annotate.config",
    "ExportConfig": "vital.annotate.config",
    "AnnotationDB": "vital.annotate.db",
    "load_corpus": "vital.annotate.loading",
    "LoadResult": "vital.annotate.loading",
    "add_user": "vital.annotate.auth",
    "issue_login_token": "vital.annotate.auth",
    "list_users": "vital.annotate.auth",
    "login_url": "vital.annotate.auth",
    "next_task": "vital.annotate.tasks",
    "submit_answer": "vital.annotate.tasks",
    "task_view": "vital.annotate.tasks",
    "release_open_tasks": "vital.annotate.tasks",
    "annotation_counts": "vital.annotate.export",
    "AnnotationCounts": "vital.annotate.export",
    "export_annotations": "vital.annotate.export",
    "export_preferences": "vital.annotate.export",
    "export_demonstrations": "vital.annotate.export",
    "ExportResult": "vital.annotate.export",
    "agreement_report": "vital.annotate.agreement",
    "AgreementReport": "vital.annotate.agreement",
    "create_app": "vital.annotate.app",
    "serve": "vital.annotate.app",
}
__all__ = sorted(_API)


__getattr__, __dir__ = lazy_attributes(__name__, _API)
