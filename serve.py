"""The prediction endpoint: a thin FastAPI service over ``classifier/``.

    python serve.py                      # or: hotline serve [--host H --port P --workers N --store PATH]
    HOTLINE_ADMIN_API_KEY=... HOTLINE_WORKERS=2 python serve.py

Routes: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /ready``, ``GET /model``,
``GET /metrics`` (Prometheus), ``POST /admin/reload`` (only when an admin key is configured); OpenAPI docs at
``/docs``.  Settings come from ``HOTLINE_*`` environment variables (``ServiceSettings``).

The code is in the ``service`` package (one concern per module); this file is its entry point.

The model is loaded once: by ``serve()`` before the workers fork (they share its arrays copy-on-write), or by
the app's lifespan when the app is built without one.  A reload builds the new model completely, then swaps a
single reference: every request reads that reference once, so it is answered by exactly one version.
With several workers a reload in one worker becomes the service's version and the others follow (relayed by the
supervisor); ``/admin/reload`` answers once they all serve it, a replacement worker serves it, and
``kill -HUP <supervisor pid>`` has one worker reload the store's current version, the others following.  Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so that ``/metrics`` sums all workers (prometheus-client's
multiprocess mode).
"""

import sys

from service.app import create_app
from service.loading import LoadedModel, load_model
from service.runner import add_command, main, serve
from service.settings import ServiceSettings

__all__ = ["ServiceSettings", "LoadedModel", "create_app", "load_model", "serve", "main", "add_command"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
