"""The connection's callbacks, which arrive on its worker thread, handed to the panel's session on the UI thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .wire import client

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session


class Forward(client.connect.Listener):
    """The connection's callbacks (worker thread) handed to the session on the UI thread."""

    def __init__(self, session: "Session", post: Callable[[Callable[[], None]], None]) -> None:
        self.session, self.post = session, post

    def state_changed(self, state, detail):
        self.post(lambda: self.session.on_state(state, detail))

    def welcomed(self, welcome):
        self.post(lambda: self.session.on_welcome(welcome))

    def models_changed(self, models):
        self.post(lambda: self.session.on_models(models))

    def job_sent(self, job_id, at):
        self.post(lambda: self.session.on_job_sent(job_id, at))

    def job_event(self, job_id, msg):
        self.post(lambda: self.session.on_job_event(job_id, msg))

    def job_result(self, job_id, msg):
        self.post(lambda: self.session.on_job_result(job_id, msg))

    def job_failed(self, job_id, code, message):
        self.post(lambda: self.session.on_job_failed(job_id, code, message))

    def job_cancelled(self, job_id):
        self.post(lambda: self.session.on_job_cancelled(job_id))

    def presets_changed(self, presets):
        self.post(lambda: self.session.downloads.on_presets(presets))

    def styles_changed(self, styles, error):
        self.post(lambda: self.session.styles.on_styles(styles, error))

    def pull_done(self, pull_id, msg):
        self.post(lambda: self.session.downloads.on_done(pull_id, msg))
