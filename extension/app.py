"""The Jupyter server extension: REST API, dashboard, scheduler and embedded worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default

from nbflows import protocol
from nbflows.automations.delivery import Deliverer, DeliveryLoop, DeliverySettings
from nbflows.extension.api import LINKS, ROUTES
from nbflows.extension.lifecycle import EmbeddedWorker, SchedulerLoop, embedded_worker_credential
from nbflows.extension.openapi import openapi_document
from nbflows.extension.orchestrator import Orchestrator
from nbflows.extension.routes import NotFoundRoute
from nbflows.results import ResultStore
from nbflows.results.retention import RetentionPolicy
from nbflows.results.store import default_result_store_options, default_result_store_url
from nbflows.scheduling import scheduler as scheduling
from nbflows.services import heartbeats
from nbflows.services.limits import Limits
from nbflows.store.db import Database, default_database_url
from nbflows.store.local import import_journal


def _limit_trait(name: str) -> Int:
    """A size limit of `nbflows.services.limits.Limits` as a setting, with its default and help."""
    return Int(Limits.default(name), min=1, help=Limits.help(name)).tag(config=True)


class NBFlowsExtension(ExtensionApp):
    name = "nbflows"
    extension_url = "/nbflows/"
    load_other_extensions = True

    database_url = Unicode(
        help="SQLAlchemy URL of the store (env NBFLOWS_DATABASE_URL); default SQLite under the "
        "Jupyter data dir, e.g. postgresql+psycopg://user@host/nbflows at scale."
    ).tag(config=True)
    embedded_worker = Bool(
        True, help="Run a worker inside the server for the pool types in embedded_worker_types."
    ).tag(config=True)
    embedded_worker_types = List(
        Unicode(), ["process"], help="Pool types the embedded worker serves."
    ).tag(config=True)
    embedded_worker_args = List(
        Unicode(), [], help="Extra arguments for `nbflows worker start` of the embedded worker."
    ).tag(config=True)
    scheduler = Bool(True, help="Run the scheduler loop in this server.").tag(config=True)
    scheduler_interval = Float(5.0, help="Seconds between scheduler passes.").tag(config=True)
    loop_lag_warning = Float(
        0.25,
        help="Log a warning when the server's event loop was blocked this many seconds (every "
        "request waited that long); 0 turns the check off.",
    ).tag(config=True)
    min_schedule_interval = Float(
        help="Schedules whose runs can come closer than this many seconds are refused (env "
        f"NBFLOWS_MIN_SCHEDULE_INTERVAL; default {scheduling.MIN_INTERVAL:g}; 0 turns it off)."
    ).tag(config=True)
    check_replies = Bool(
        help="Check every API answer against its declared model and log any mismatch (env "
        "NBFLOWS_CHECK_REPLIES=1; the tests turn it on). It costs each request time on the "
        "server's event loop, so it is off by default.",
    ).tag(config=True)
    automation_retry_delay = Float(
        10.0,
        help="Seconds before an automation's failed delivery is tried again; each next try "
        "waits twice as long (capped at an hour).",
    ).tag(config=True)
    automation_max_attempts = Int(
        8, min=1, help="Attempts before an automation's delivery is given up as failed."
    ).tag(config=True)
    automation_poll_interval = Float(
        1.0, help="Seconds between looks at the automations' outbox when nothing was due."
    ).tag(config=True)
    result_store_url = Unicode(
        help="Where executed notebooks, exports and artifacts of runs are kept: a folder or any "
        "fsspec URL, e.g. s3://bucket/nbflows (needs s3fs: pip install 'nbflows[s3]'); env "
        "NBFLOWS_RESULT_STORE_URL; default the folder nbflows/results under the Jupyter data dir."
    ).tag(config=True)
    result_store_options = Dict(
        help="fsspec storage options of the result store, e.g. {'endpoint_url': "
        "'http://127.0.0.1:9000'} for an S3-compatible server (env NBFLOWS_RESULT_STORE_OPTIONS, "
        "JSON). Credentials are best given the usual way (AWS_ACCESS_KEY_ID, ...)."
    ).tag(config=True)
    retention_days = Float(
        0,
        help="The scheduler deletes finished runs older than this many days, with their logs, "
        "notebooks and artifacts; 0 keeps them (a deployment's own policy applies first).",
    ).tag(config=True)
    retention_keep_last = Int(
        0,
        min=0,
        help="Runs the retention pass always keeps per deployment (and per interactive flow), "
        "newest first, however old; 0: no such floor.",
    ).tag(config=True)
    retention_interval = Float(300.0, help="Seconds between the scheduler's retention passes.").tag(
        config=True
    )
    offline_worker_ttl = Float(
        heartbeats.OFFLINE_WORKER_TTL,
        help="Seconds a worker stays listed (OFFLINE) after its last heartbeat before its row "
        "is removed; 0 keeps them.",
    ).tag(config=True)
    max_body_size = _limit_trait("max_body_size")
    max_parameters_size = _limit_trait("max_parameters_size")
    max_notebook_size = _limit_trait("max_notebook_size")
    max_log_line = _limit_trait("max_log_line")
    max_run_output = _limit_trait("max_run_output")
    max_artifact_size = _limit_trait("max_artifact_size")
    max_run_artifacts = _limit_trait("max_run_artifacts")
    max_project_size = _limit_trait("max_project_size")

    @default("result_store_url")
    def _default_result_store_url(self) -> str:
        return default_result_store_url()

    @default("result_store_options")
    def _default_result_store_options(self) -> dict[str, Any]:
        return default_result_store_options()

    @default("database_url")
    def _default_database_url(self) -> str:
        return default_database_url()

    @default("min_schedule_interval")
    def _default_min_schedule_interval(self) -> float:
        text = os.environ.get("NBFLOWS_MIN_SCHEDULE_INTERVAL", "")
        try:
            return float(text) if text.strip() else scheduling.MIN_INTERVAL
        except ValueError:
            raise TraitError(
                f"NBFLOWS_MIN_SCHEDULE_INTERVAL must be a number of seconds, not {text!r}"
            ) from None

    @default("check_replies")
    def _default_check_replies(self) -> bool:
        return os.environ.get("NBFLOWS_CHECK_REPLIES", "").strip().lower() in ("1", "true", "yes")

    @property
    def server(self) -> ServerApp:
        assert self.serverapp is not None, "the extension runs inside a Jupyter server"
        return self.serverapp

    def initialize_settings(self) -> None:
        root_dir = os.path.abspath(os.path.expanduser(self.server.root_dir))
        database = Database(self.database_url)
        # Runs kernels recorded while no server ran (before the loop serves: like migrating).
        imported = import_journal(database, self.database_url)
        if imported:
            self.log.info("nbflows: imported %d flow runs from the local journal", imported)
        results = ResultStore(self.result_store_url, dict(self.result_store_options))
        self.orchestrator = Orchestrator(database, root_dir=root_dir, results=results)
        # The Lab extension's states come from here (PageConfig `nbflowsStates`,
        # `nbflowsTerminalStates`): one list, `nbflows.protocol`'s.
        page_config = self.server.web_app.settings.setdefault("page_config_data", {})
        page_config["nbflowsTerminalStates"] = " ".join(sorted(protocol.TERMINAL_VALUES))
        page_config["nbflowsStates"] = " ".join(state.value for state in protocol.StateType)
        self.settings.update(
            {
                "nbflows_orchestrator": self.orchestrator,
                "nbflows_openapi": openapi_document(ROUTES, LINKS),
                "nbflows_min_schedule_interval": self.min_schedule_interval,
                "nbflows_check_replies": self.check_replies,
                "nbflows_limits": Limits(
                    **{name: getattr(self, name) for name in Limits().as_json()}
                ),
            }
        )
        if self.check_replies:
            self.log.info("nbflows: every answer is checked against its declared model")
        retention = RetentionPolicy(
            older_than_days=self.retention_days or None,
            keep_last=self.retention_keep_last or None,
        )
        self.scheduler_loop = SchedulerLoop(
            self.orchestrator,
            self.scheduler_interval,
            retention=retention,
            retention_interval=self.retention_interval,
            worker_ttl=self.offline_worker_ttl,
        )
        self.delivery_settings = DeliverySettings(
            retry_delay=self.automation_retry_delay,
            max_attempts=self.automation_max_attempts,
            poll_interval=self.automation_poll_interval,
        )
        self.delivery_loop = DeliveryLoop(Deliverer(database, self.delivery_settings))
        self.loop_lag = LoopLagMonitor(self.loop_lag_warning, self.log)
        self.worker: EmbeddedWorker | None = None
        # Ports are bound after extensions load: finish start-up once the loop runs.
        IOLoop.current().add_callback(self._started)
        self.log.info("nbflows store: %s", database.engine.url.render_as_string(hide_password=True))
        self.log.info("nbflows result store: %s", results.url)

    def initialize_handlers(self) -> None:
        api = [(rf"/nbflows/api/{pattern}/?", handler) for pattern, handler, _ in ROUTES]
        api.append((r"/nbflows/api/(?P<path>.*)", NotFoundRoute))
        self.handlers.extend(api)
        self.handlers.extend(_dashboard_handlers())

    @property
    def api_url(self) -> str:
        return self.server.connection_url.rstrip("/") + "/nbflows/api/"

    async def _started(self) -> None:
        token = self.server.identity_provider.token or ""
        # Kernels inherit the server's environment: this is how %%flow finds the API.
        os.environ[protocol.API_URL_ENV] = self.api_url
        os.environ[protocol.API_TOKEN_ENV] = token
        self.orchestrator.start()
        self.loop_lag.start()
        if self.scheduler:
            self.scheduler_loop.start()
        # Links in messages: the dashboard's address, without the token.
        self.delivery_settings.dashboard_url = self.server.connection_url.rstrip("/") + "/nbflows/"
        self.delivery_loop.start()
        if self.embedded_worker and self.embedded_worker_types:
            types = list(self.embedded_worker_types)
            worker_token = await self.orchestrator.call(
                embedded_worker_credential, EmbeddedWorker.name_for(self.api_url), types
            )
            self.worker = EmbeddedWorker(
                self.api_url,
                worker_token,
                list(self.embedded_worker_types),
                list(self.embedded_worker_args),
            )
            self.worker.start()
        self.log.info("nbflows dashboard: %s", self.dashboard_url)

    @property
    def dashboard_url(self) -> str:
        """The dashboard's URL to show a person: with `?token=...` standing for the token of
        Jupyter's own URL, never the token itself (logs are kept and shared)."""
        url = self.server.connection_url.rstrip("/") + "/nbflows/"
        return url + "?token=..." if self.server.identity_provider.token else url

    async def stop_extension(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.scheduler_loop.stop()
        await self.delivery_loop.stop()
        await self.loop_lag.stop()
        self.orchestrator.close()


class LoopLagMonitor:
    """Measures how late the event loop runs a short timer: the time everything on the loop
    (requests, long polls, the scheduler) waited for whatever blocked it."""

    interval = 0.1

    def __init__(self, threshold: float, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self.threshold = threshold
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.threshold > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nbflows-lag")
            self.log.info("nbflows: event loop lags of %g s or more are logged", self.threshold)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - started - self.interval
            if lag >= self.threshold:
                self.log.warning("nbflows: the event loop was blocked for %.2f s", lag)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _dashboard_handlers() -> list[tuple[str, Any]]:
    try:
        from nbflows.extension.dashboard import HANDLERS
    except ImportError:
        return []
    return list(HANDLERS)
