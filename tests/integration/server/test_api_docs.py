"""``/docs``: Swagger UI from the package, over the server's own document, rendered by a browser."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from aimass.app import create_app
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.server import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("docs-home"))
    registry = Registry.from_settings(settings)
    try:
        with serve_in_thread(create_app(settings, registry=registry)) as url:
            yield url
    finally:
        registry.close()


class _References(HTMLParser):
    """Every URL a page's tags load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.found.append(value)


def test_docs_is_a_page_of_local_assets(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        parser = _References()
        parser.feed(page.text)
        assert len(parser.found) == 3  # the stylesheet, Swagger UI, the page's own script
        kinds = {}
        for reference in parser.found:
            assert not urlsplit(reference).scheme and not reference.startswith("//"), reference
            url = urljoin(f"{served}/docs", reference)
            assert url.startswith(f"{served}/docs/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["x-content-type-options"] == "nosniff"
            kinds[reference.rsplit(".", 1)[1]] = asset.headers["content-type"].split(";")[0]
        assert kinds == {"css": "text/css", "js": "text/javascript"}
        licence = client.get("/docs/LICENSE")
        assert licence.headers["content-type"].startswith("text/plain")
        assert "Apache License" in licence.text
        unknown = client.get("/docs/secrets.txt")
        assert unknown.status_code == 400
        assert "path parameter asset must be one of" in unknown.json()["error"]


def test_docs_is_open_and_documented_like_openapi_json(served: str) -> None:
    document = httpx.get(f"{served}/openapi.json").json()
    page = document["paths"]["/docs"]["get"]
    assert page["x-aimass-role"] == "none" and "text/html" in page["responses"]["200"]["content"]
    asset = document["paths"]["/docs/{asset}"]["get"]["parameters"][0]
    assert "swagger-ui-bundle.js" in asset["schema"]["enum"]


def test_the_docs_files_are_package_data() -> None:
    src = Path(__file__).parents[3] / "src" / "aimass"
    with (src.parents[1] / "pyproject.toml").open("rb") as file:
        patterns = tomllib.load(file)["tool"]["setuptools"]["package-data"]["aimass"]
    shipped = [p for p in (src / "server" / "static").rglob("*") if p.is_file()]
    assert len(shipped) == 7
    for path in shipped:
        relative = path.relative_to(src).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def _sync_playwright() -> Any:
    """Playwright's sync API, or a skip saying what is missing (a failure under CI)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not CHROMIUM.is_file():
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    return sync_playwright


def test_a_browser_renders_every_operation_from_this_server_alone(served: str) -> None:
    sync_playwright = _sync_playwright()
    document = httpx.get(f"{served}/openapi.json").json()
    operations = [
        operation
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in _METHODS
    ]
    elsewhere: list[str] = []
    problems: list[str] = []

    def only_here(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_here)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.goto(f"{served}/docs")
            page.get_by_text("Run inference (JSON or binary tensors)").first.wait_for()
            assert page.locator(".opblock").count() == len(operations)
            assert page.locator(".info .title").first.inner_text().startswith("aimass")
        finally:
            browser.close()
    assert elsewhere == []
    assert problems == []  # no script error, no CSP violation
