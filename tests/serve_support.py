"""Helpers shared by the service tests: small model stores, free ports, a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from classifier.model import ComplaintClassifier
from classifier.store import ModelStore
from tests.conftest import TINY_CASES, tiny_config
from training.train import save_model

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "admin-key-for-tests-0123456789"


def tiny_classifier(seed: int = 7, calibration: str = "temperature",
                    cases: list[tuple[str, str, str]] = TINY_CASES) -> ComplaintClassifier:
    texts = [t for t, _, _ in cases]
    return ComplaintClassifier(tiny_config(seed=seed, **{"model.calibration": calibration})).fit(
        texts, {"category": [c for _, c, _ in cases], "agency": [a for _, _, a in cases]}
    )


class SlowToLoad:
    """Ballast that makes a model take ``seconds`` to unpickle, as a real one does (the demo model ~4 s, a
    Qingdao-sized one longer), so that what happens while a worker loads can be seen with a tiny model."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __getstate__(self) -> dict[str, float]:
        return {"seconds": self.seconds}

    def __setstate__(self, state: dict[str, float]) -> None:
        self.seconds = state["seconds"]
        time.sleep(self.seconds)


def slow_to_load(model: ComplaintClassifier, seconds: float) -> ComplaintClassifier:
    model.slow_to_load_ = SlowToLoad(seconds)  # type: ignore[attr-defined]
    return model


def tiny_store(path: Path, model: ComplaintClassifier) -> tuple[ModelStore, str]:
    """A store whose current version is ``model``."""
    store = ModelStore(path)
    version = save_model(model, store, promote=True)
    return store, version


def corrupt(store: ModelStore, version: str) -> None:
    """Damage a version's pickle so its checksum no longer matches (the store must refuse it)."""
    model_file = store.path / version / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(store: Path, log_path: Path, workers: int = 1, **env: str) -> Iterator[tuple[str, Any]]:
    """``python serve.py`` on 127.0.0.1 and a free port; yields (base url, Popen); stops it with SIGTERM."""
    port = free_port()
    full_env = {**os.environ, "HOTLINE_MODEL_STORE": str(store), "HOTLINE_PORT": str(port),
                "HOTLINE_WORKERS": str(workers), "HOTLINE_TRAIN_DEMO_IF_EMPTY": "false", **env}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py")], cwd=REPO, env=full_env,
                                stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, log_path)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(url: str, proc: Any, log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready after {timeout} s:\n{log_path.read_text(errors='replace')}")
