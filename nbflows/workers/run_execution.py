"""Executing one claimed run on a worker: PENDING → RUNNING → the pool type's `run()` → logs
flushed, notebook and artifacts stored → the end state reported; and a run the worker will not
start handed back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from nbflows.errors import Conflict, NBFlowsError, NotFound
from nbflows.services import secrets
from nbflows.services.secrets import Masker
from nbflows.workers.claimed_run import (
    ActiveRun,
    ClaimedRun,
    Outcome,
)
from nbflows.workers.reporting import RunReporter, unreachable
from nbflows.workers.worker_state import (
    END_AT_ONCE_SIZE,
    END_LEVELS,
    MAX_BACKOFF,
    WorkerState,
)


class RunExecution(WorkerState):
    """Executing claimed runs, each on its own thread."""

    def _hand_back(self, claimed: ClaimedRun, reason: str) -> None:
        """Give a run this worker will not start back to the server (the server hands it back
        itself if this cannot be said)."""
        message = f"handed back by worker '{self.name}' before it started ({reason})"
        try:
            self._report(claimed, "SCHEDULED", message, patient=False)
        except Conflict:
            self._settle_unstarted(claimed)

    def _settle_unstarted(self, claimed: ClaimedRun) -> None:
        """A run this worker claimed but will not start, and that is not PENDING any more."""
        try:
            run = self.client.read_flow_run(claimed.id)
        except NBFlowsError:
            return
        if (run.get("state") or {}).get("type") == "CANCELLING":
            with contextlib.suppress(Conflict):
                self._report(claimed, "CANCELLED", "cancelled before it started")

    # -- executing one run ----------------------------------------------------------------------

    def _execute(self, active: ActiveRun) -> None:
        claimed = active.claimed
        assert self._shipper is not None
        live = claimed.job_configuration.get("stream_output") is not False
        problem: str | None = None
        try:
            claimed, masker = self._with_secrets(claimed)
        except NBFlowsError as exc:
            masker, problem = Masker(()), f"its secrets could not be resolved: {exc}"
        reporter = RunReporter(
            self._shipper, claimed.id, live=live, fence=claimed.fence, masker=masker
        )
        outcome: Outcome | None = None
        try:
            if not self._begin(active):
                return
            self.say(f"{claimed.label} started")
            if problem is not None:
                outcome = Outcome("FAILED", problem)
            else:
                outcome = self.run(claimed, reporter, active.cancel_event)
        except Exception as exc:
            outcome = Outcome(
                "CRASHED", f"the worker failed while running the flow: {type(exc).__name__}: {exc}"
            )
            reporter.log(traceback.format_exc().rstrip(), logging.ERROR)
        finally:
            try:
                if outcome is not None:
                    self._finish(active, reporter, outcome)
                else:
                    reporter.close()
            finally:
                with self._slots:
                    # A retry of the run may have been claimed while this attempt reported.
                    if self._active.get(claimed.id) is active:
                        del self._active[claimed.id]
                    self._slots.notify_all()

    def _with_secrets(self, claimed: ClaimedRun) -> tuple[ClaimedRun, Masker]:
        """`claimed` with the secrets its parameters and job configuration refer to resolved
        (asked of the server now, never kept), and what hides their values again."""
        names = secrets.references(claimed.flow_run.get("parameters"), claimed.job_configuration)
        if not names:
            return claimed, Masker(())
        values = self._patiently(lambda: self.client.read_run_secrets(claimed.id))
        flow_run = dict(claimed.flow_run)
        flow_run["parameters"] = secrets.substitute(flow_run.get("parameters") or {}, values)
        config = secrets.substitute(claimed.job_configuration, values)
        resolved = replace(claimed, flow_run=flow_run, job_configuration=config)
        return resolved, Masker(values.values())

    def _begin(self, active: ActiveRun) -> bool:
        """PENDING → RUNNING (waiting for the server if it is away); False, and the run settled,
        when it must not start."""
        claimed = active.claimed
        if self._stopping.is_set():
            self._hand_back(claimed, "the worker is stopping")
            return False
        if active.cancel_event.is_set():
            with contextlib.suppress(Conflict):
                self._report(claimed, "CANCELLED", "cancelled before it started")
            return False
        try:
            if self._report(claimed, "RUNNING", None) is None:
                return False  # the server stayed away until the worker had to exit
        except Conflict:
            self._settle_unstarted(claimed)
            return False
        return True

    def _finish(self, active: ActiveRun, reporter: RunReporter, outcome: Outcome) -> None:
        """Logs, then the executed notebook, then the final state: a watcher that sees the run
        end finds everything else there already. While the server is away each waits for it:
        an attempt's result is not dropped because the server was restarting."""
        claimed = active.claimed
        state: str = outcome.state
        message = outcome.message
        hand_back = (
            state == "CANCELLED" and active.stop_reason is not None and not active.cancelled_by_user
        )
        if hand_back:
            if outcome.output_dir is not None:  # the next attempt writes its own
                shutil.rmtree(outcome.output_dir, ignore_errors=True)
            reporter.log(f"stopped: {active.stop_reason}; the run is handed back", logging.WARNING)
            reporter.close()
            note = (
                f"handed back by worker '{self.name}' ({active.stop_reason}; it was still running "
                f"after the {self.grace:g} s grace)"
            )
            final = self._report_end(claimed, "SCHEDULED", note)
            self._say_end(active, "SCHEDULED", final, "handed back")
            return
        if state == "CANCELLED" and active.stop_reason:
            message = f"{active.stop_reason}: {message}" if message else active.stop_reason
        reporter.log(f"{state}: {message}" if message else state, END_LEVELS[state])
        message = reporter.masker.text(message)
        notebook = reporter.masker.json(outcome.notebook) if outcome.notebook is not None else None
        if self._simple_end(claimed, outcome, notebook):
            ended = self._end_at_once(claimed, reporter, notebook, state, message)
            if ended is not False:
                final = ended if isinstance(ended, dict) else None
                first_line = message.splitlines()[0] if message else ""
                self._say_end(active, state, final, first_line if state != "COMPLETED" else "")
                return
        if notebook is not None:
            from nbflows.workers.run_exports import send_exports

            self._store_notebook(claimed, reporter, notebook)
            send_exports(self, claimed, reporter, notebook)
        if outcome.output_dir is not None:
            self._store_artifacts(claimed, reporter, outcome.output_dir)
        reporter.close(state)
        final = self._report_end(claimed, state, message)
        first_line = message.splitlines()[0] if message else ""
        self._say_end(active, state, final, first_line if state != "COMPLETED" else "")

    def _simple_end(
        self, claimed: ClaimedRun, outcome: Outcome, notebook: Mapping[str, Any] | None
    ) -> bool:
        """Whether the attempt's end fits one report (`_end_at_once`): no exports to make, no
        artifacts to send, a notebook of at most `END_AT_ONCE_SIZE` bytes of JSON."""
        if (claimed.deployment or {}).get("exports"):
            return False
        if outcome.output_dir is not None:
            from nbflows.results.artifacts import collect_output_folder

            if next(iter(collect_output_folder(outcome.output_dir)), None) is not None:
                return False
            shutil.rmtree(outcome.output_dir, ignore_errors=True)
        return notebook is None or len(json.dumps(notebook)) <= END_AT_ONCE_SIZE

    def _end_at_once(
        self,
        claimed: ClaimedRun,
        reporter: RunReporter,
        notebook: Mapping[str, Any] | None,
        state: str,
        message: str,
    ) -> dict[str, Any] | bool | None:
        """The last log lines, the executed notebook and the end state in one request (one
        transaction on the server: a watcher that sees the end finds the rest). The final run
        (None when the server stayed away until the worker had to exit), or False when the
        server refused it (the run is not this worker's any more, say): then the worker
        reports the usual way, one part at a time, and says what was refused."""
        answer: dict[str, Any] = {}

        def send(lines: list[dict[str, Any]]) -> bool:
            def end() -> dict[str, Any]:
                return self.client.end_flow_run(
                    claimed.id,
                    state,
                    message or None,
                    worker=self.name,
                    fence=claimed.fence,
                    logs=lines,
                    notebook=notebook,
                )

            try:
                answer["run"] = self._patiently(end)
            except NBFlowsError as exc:
                if unreachable(exc):  # the worker must exit: what is left waits no longer
                    self._failed(exc)
                    self.say(f"could not report {claimed.label} {state}: {exc}")
                    answer["run"] = None
                    return True
                return False
            return True

        if not reporter.close_with(send):
            return False
        return answer["run"]

    def _say_end(
        self, active: ActiveRun, state: str, final: dict[str, Any] | None, note: str
    ) -> None:
        took = time.monotonic() - active.started
        summary = (final.get("state") or {}).get("type", state) if final else state
        if final and summary == "SCHEDULED" and state != "SCHEDULED":
            summary = f"{state}, will be retried"
        self.say(
            f"{active.claimed.label} ended {summary} in {took:.2f} s"
            + (f": {note}" if note else "")
        )

    def _store_notebook(
        self, claimed: ClaimedRun, reporter: RunReporter, notebook: Mapping[str, Any]
    ) -> None:
        def store() -> Any:
            return self.client.write_flow_run_notebook(
                claimed.id, notebook, worker=self.name, fence=claimed.fence
            )

        try:
            self._patiently(store)
        except Conflict as exc:
            reporter.log(f"the executed notebook was refused: {exc}", logging.WARNING)
        except NBFlowsError as exc:
            reporter.log(f"could not store the executed notebook: {exc}", logging.WARNING)

    def _store_artifacts(self, claimed: ClaimedRun, reporter: RunReporter, folder: str) -> None:
        """Send every file the run left in its output folder, then remove the folder. A file
        the server refuses (over a size limit) is named in the run's log with the reason."""
        from nbflows.results.artifacts import collect_output_folder

        kept = 0
        try:
            for name, path in collect_output_folder(folder):
                data = path.read_bytes()

                def store(name: str = name, data: bytes = data) -> Any:
                    return self.client.write_flow_run_artifact(
                        claimed.id, name, data, worker=self.name, fence=claimed.fence
                    )

                try:
                    self._patiently(store)
                    kept += 1
                except NBFlowsError as exc:
                    reporter.log(f"artifact '{name}' was not kept: {exc}", logging.WARNING)
                    if isinstance(exc, Conflict):
                        return  # the run is not this worker's any more
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if kept:
            reporter.log(f"kept {kept} artifact{'s' if kept != 1 else ''} of the run")

    def _report_end(self, claimed: ClaimedRun, state: str, message: str) -> dict[str, Any] | None:
        try:
            return self._report(claimed, state, message or None)
        except Conflict:
            pass
        # The run changed under this worker: cancellation was asked for as it ended, or the
        # server gave the run up (the worker was silent too long) and it is not ours any more.
        try:
            run = self.client.read_flow_run(claimed.id)
        except NBFlowsError:
            return None
        current = (run.get("state") or {}).get("type")
        if current == "CANCELLING" and run.get("worker_name") == self.name:
            note = f"cancellation was requested as the run ended {state}"
            with contextlib.suppress(Conflict):
                return self._report(claimed, "CANCELLED", f"{note}: {message}" if message else note)
        self.say(
            f"{claimed.label} ended {state} here; the server has the run {current} now "
            f"(attempt {run.get('attempt')}, worker {run.get('worker_name')})"
        )
        return run

    def _report(
        self, claimed: ClaimedRun, state: str, message: str | None, *, patient: bool = True
    ) -> dict[str, Any] | None:
        """Report a state of a run this worker holds; `Conflict` once it holds it no more.
        While the server is away: wait for it (`patient`), or give up at once. None when the
        report could not be made."""

        def send() -> dict[str, Any]:
            return self.client.set_flow_run_state(
                claimed.id, state, message=message, worker=self.name, fence=claimed.fence
            )

        try:
            return self._patiently(send) if patient else send()
        except Conflict:
            raise
        except NotFound:
            return None
        except NBFlowsError as exc:
            self._failed(exc)
            self.say(f"could not report {claimed.label} {state}: {exc}")
            return None

    def _patiently(self, request: Callable[[], Any]) -> Any:
        """`request()`, sent again with backoff while the server is away, until it answers
        (or the worker gives up waiting when it must exit)."""
        delay = 0.2
        while True:
            try:
                answer = request()
            except NBFlowsError as exc:
                if not unreachable(exc) or self._give_up.is_set():
                    raise
                self.link.failed(exc)
                if self._give_up.wait(delay):
                    raise
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.link.ok()
            return answer
