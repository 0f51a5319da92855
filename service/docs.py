"""The API documentation pages, served with no network: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

FastAPI's own pages load their scripts, styles, fonts and favicon from public CDNs, so on a hotline's intranet
they are blank.  These pages load everything from the service itself: the Swagger UI and ReDoc bundles of
fastapi-offline (a maintained package that ships the upstream builds, MIT; Swagger UI is Apache-2.0, ReDoc
MIT), mounted at ``/docs-assets``.  No Google Fonts, no validator badge (Swagger UI would ask a public
validator about the schema), and a Content-Security-Policy that lets the pages load nothing from elsewhere:
ReDoc's sidebar shows a logo from its vendor's CDN, which the browser then does not even ask for (ReDoc hides
the image when it fails), so the pages never reach outside an intranet.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

__all__ = ["ASSETS_URL", "CONTENT_SECURITY_POLICY", "add_docs", "assets_dir"]

ASSETS_URL = "/docs-assets"
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "defaultModelsExpandDepth": 1, "displayRequestDuration": True}
# the pages' own inline start-up script and styles, the packaged files, data: images (Swagger UI's icons) and
# ReDoc's search worker; nothing from another origin
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
                           "frame-ancestors 'self'")


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def assets_dir() -> Path:
    """The folder of the packaged Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def add_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve ``docs_url`` and ``redoc_url`` for ``app`` (built with ``docs_url=None, redoc_url=None``) from the
    packaged assets."""
    folder = assets_dir()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        if not (folder / name).is_file():  # a broken install: say so at start, not with a blank page
            raise RuntimeError(f"the API docs' {name} is missing from {folder}; reinstall fastapi-offline")
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        ))

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False,
        ))
