"""Running the service: logging, the store at start-up, one uvicorn server or a supervisor of forked workers,
and the command line (``hotline serve``, ``python serve.py``)."""

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import SettingsError

from classifier.errors import ComplaintInputError, ConfigError, ModelStoreError
from classifier.store import ModelStore
from service.app import create_app
from service.loading import LoadedModel, ModelHolder, freeze_heap, load_model
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings
from service.worker_versions import WorkerVersions

log = logging.getLogger("hotline.serve")

# -- running it -----------------------------------------------------------------------------------------------
class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{"):
            return msg
        return json.dumps({"event": "log", "level": record.levelname.lower(), "logger": record.name,
                           "message": msg}, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def prepare_store(settings: ServiceSettings, say: Callable[[str], None]) -> ModelStore:
    """The store, with the demo model trained into it when it is empty (unless that is turned off)."""
    store = ModelStore(settings.model_store)
    if store.current() is None:
        if not settings.train_demo_if_empty:
            raise SystemExit(
                f"error: model store {store.path} has no current model. Train one with "
                f"`hotline train cases.xlsx --text COLUMN --category COLUMN --agency COLUMN --store {store.path} "
                f"--promote`, or `hotline demo --store {store.path}` for the Ningxia demo model, or set "
                "HOTLINE_TRAIN_DEMO_IF_EMPTY=true"
            )
        from training.demo import ensure_demo_model

        say(f"model store {store.path} is empty: training the Ningxia demo model (about 20 s)")
        try:
            version, _ = ensure_demo_model(store)
        except (ModelStoreError, ConfigError) as exc:  # e.g. a weak HOTLINE_STORE_SIGNING_KEY
            raise SystemExit(f"error: cannot train the demo model into {store.path}: {exc}") from None
        say(f"trained demo model version {version}")
    return store


def prepare_decision_log(settings: ServiceSettings, say: Callable[[str], None]) -> None:
    """Migrate the decision log once, before the workers fork (they would race to do it); a database that is
    down now does not stop the service: the log starts degraded and each worker retries."""
    if not settings.decision_log:
        say("decision log off (HOTLINE_DECISION_LOG=false): predictions are not recorded, /feedback is absent")
        return
    from classifier.errors import DecisionLogError
    from live.db import describe_url
    from live.log import DecisionLog

    url = settings.decision_log_address()
    try:
        decision_log = DecisionLog(url, busy_timeout_s=settings.decision_log_timeout_seconds)
        decision_log.close()
    except DecisionLogError as exc:
        log.error(json.dumps({"event": "decision_log_degraded", "error": str(exc)}, ensure_ascii=False))
        return
    texts = (f"masked texts kept {settings.decision_log_text_retention_days} days" if settings.decision_log_texts
             else "no texts")
    say(f"decision log at {describe_url(url)} ({texts})")


def serve(settings: ServiceSettings) -> int:
    """Load the model, bind the socket, then run one uvicorn server or fork ``workers`` of them."""
    configure_logging(settings.log_level)

    def say(msg: str) -> None:
        log.info(json.dumps({"event": "startup", "message": msg}, ensure_ascii=False))

    for warning in settings.security_warnings():
        log.warning(json.dumps({"event": "security_warning", "message": warning}, ensure_ascii=False))
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning(json.dumps({"event": "startup", "message": f"{settings.workers} workers without "
                                "PROMETHEUS_MULTIPROC_DIR: /metrics shows only the worker that answers the scrape; "
                                "set it to an empty directory to sum all workers"}))
    prepare_store(settings, say)
    try:
        loaded = load_model(settings)
    except (ModelStoreError, ComplaintInputError, OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: cannot load the model: {exc}") from None
    prepare_decision_log(settings, say)
    freeze_heap()  # before forking: the workers share the model's pages and never collect them
    say(f"loaded model version {loaded.version} from {settings.model_store}")
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; choose another "
                         "port with --port or HOTLINE_PORT") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    say(f"listening on http://{settings.host}:{sock.getsockname()[1]} with {settings.workers} worker(s); "
        "docs at /docs")
    if settings.workers == 1:
        app = create_app(settings, loaded)
        _on_signals(app)
        _uvicorn_server(app, settings).run(sockets=[sock])
        return 0
    first = [loaded]
    del loaded  # the supervisor drops its model when it loads the next one for a replacement worker
    return _supervise(settings, first, sock)


def _uvicorn_server(app: FastAPI, settings: ServiceSettings) -> Any:
    import uvicorn

    from service.limits import timed_protocol

    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False,
                            http=timed_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds))
    return uvicorn.Server(config)


def _on_signals(app: FastAPI, relay: Callable[[], None] | None = None) -> None:
    """SIGHUP: reload the store's current version if it changed.  With several workers (``relay``: tell the
    supervisor) a successful reload becomes the service's version, and SIGUSR1 (a sibling switched) makes this
    worker follow it.  Both load in a thread: the event loop keeps serving the old model meanwhile."""
    holder: ModelHolder = app.state.holder
    metrics: ServiceMetrics = app.state.metrics

    def in_thread(work: Callable[[], None]) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            def run() -> None:
                work()
                if holder.current is not None:
                    metrics.set_model(holder.current.version)

            threading.Thread(target=run, name="hotline-reload", daemon=True).start()

        return handler

    def reload() -> None:
        new = holder.reload_if_changed()
        if relay is None:
            return
        if new is not None and holder.versions is not None:
            holder.versions.set_target(new.version)
        relay()  # also when unchanged: a worker that failed to follow earlier tries again

    signal.signal(signal.SIGHUP, in_thread(reload))
    if relay is not None:
        signal.signal(signal.SIGUSR1, in_thread(holder.follow_target))


def _supervise(settings: ServiceSettings, first: list[LoadedModel], sock: socket.socket) -> int:
    """Fork ``workers`` uvicorn servers sharing the listening socket and the loaded model (copy-on-write).

    SIGTERM/SIGINT stop them.  SIGHUP asks one worker to reload the store's current version; a worker whose
    reload succeeds (that one, or one asked by ``/admin/reload``) records the new version as the service's
    (``WorkerVersions.target``) and sends SIGUSR1, which the supervisor passes to every worker: each switches to
    that version.  A worker that dies is replaced by one serving the service's version, loaded by the
    supervisor before it forks (so replacements share it); while that version cannot be loaded, the worker is
    not replaced (retried every few seconds) rather than replaced by one serving an older version.
    """
    supervisor = os.getpid()
    serving = first.pop()  # what the supervisor forks with (the only reference: replaced on a switch)
    versions = WorkerVersions.create(settings.workers)
    versions.set_target(serving.version)
    children: dict[int, int] = {}
    vacant: dict[int, float] = {}  # slot -> when to try to fill it again
    stopping = False

    def relay() -> None:
        os.kill(supervisor, signal.SIGUSR1)

    def model_for_new_worker() -> LoadedModel | None:
        nonlocal serving
        target = versions.target()
        if target is None or target == serving.version:
            return serving
        try:
            serving = load_model(settings, version=target)
        except Exception as exc:  # say why and retry; never fork a worker on an older version
            log.error(json.dumps({"event": "worker_not_replaced", "version": target, "retry_in_s": 5,
                                  "error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False))
            return None
        freeze_heap(refreeze=True)
        log.info(json.dumps({"event": "supervisor_model_loaded", "version": target}))
        return serving

    def spawn(slot: int) -> None:
        model = model_for_new_worker()
        if model is None:
            vacant[slot] = time.monotonic() + 5
            return
        vacant.pop(slot, None)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for s in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(s, signal.SIG_DFL)
                for s in (signal.SIGHUP, signal.SIGUSR1):  # until its own handlers are in place
                    signal.signal(s, signal.SIG_IGN)
                app = create_app(settings, model, on_reload=lambda new: relay(), versions=versions)
                _on_signals(app, relay)
                app.state.holder.follow_target()  # a switch between the fork and the handlers
                _uvicorn_server(app, settings).run(sockets=[sock])
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's loop
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        vacant.clear()
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    def hup(signum: int, frame: Any) -> None:
        if children:  # one worker reloads; if it switches, every worker follows (SIGUSR1)
            _kill(min(children, key=lambda pid: children[pid]), signal.SIGHUP)

    def usr1(signum: int, frame: Any) -> None:
        for pid in list(children):
            _kill(pid, signal.SIGUSR1)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    signal.signal(signal.SIGUSR1, usr1)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:  # a previous run's files would be summed with ours
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink()
    try:
        for n in range(settings.workers):
            spawn(n)
        restarts: list[float] = []
        while children or vacant:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG) if vacant else os.wait()
            except ChildProcessError:
                pid, status = 0, 0
                if not vacant:
                    break
            if pid == 0:  # a vacant slot waits for a loadable model
                time.sleep(0.2)
                now = time.monotonic()
                for slot, when in list(vacant.items()):
                    if when <= now and not stopping:
                        spawn(slot)
                continue
            dead = children.pop(pid, None)
            versions.forget(pid)
            if metrics_dir:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid)
            if dead is None or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5 * settings.workers:
                log.error(json.dumps({"event": "workers_crashing", "message": "workers keep dying; stopping"}))
                stop(signal.SIGTERM, None)
                continue
            log.warning(json.dumps({"event": "worker_died", "pid": pid, "status": status, "restarting": True}))
            spawn(dead)
    finally:
        versions.remove()
    return 0


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _settings_from(args: argparse.Namespace) -> ServiceSettings:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers),
                                    ("model_store", args.store)) if v is not None}
    try:
        return ServiceSettings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise SystemExit("error: refusing to start with these settings:\n" + "\n".join(lines)) from None
    except SettingsError as exc:  # an environment value pydantic-settings cannot decode at all
        raise SystemExit(f"error: refusing to start with these settings:\n  {exc}") from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default: $HOTLINE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: $HOTLINE_PORT or 8000)")
    p.add_argument("--workers", type=int, help="worker processes (default: $HOTLINE_WORKERS or 1)")
    p.add_argument("--store", type=Path, help="model store folder (default: $HOTLINE_MODEL_STORE or models/)")


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(_settings_from(args))


def add_command(subparsers: Any) -> None:
    """``hotline serve``: found by ``training.cli``."""
    p = subparsers.add_parser("serve", help="run the prediction service (HTTP)",
                              description="Run the prediction service. Other settings: HOTLINE_* environment "
                              "variables (see serve.ServiceSettings).")
    _add_arguments(p)
    p.set_defaults(func=cmd_serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve.py", description="Run the hotline prediction service.")
    _add_arguments(parser)
    return cmd_serve(parser.parse_args(argv))
