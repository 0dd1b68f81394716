"""The web tier's client for the app tier's JSON API (``<app_url>/api/v1``).

An API error becomes :class:`ApiError` (status, code, message, field errors);
an app tier that cannot be reached, times out or answers 5xx becomes
:class:`~tierlake.errors.AppTierUnavailableError`, which the web tier shows as
a friendly 503 page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from tierlake.asgi.request_id import HEADER as REQUEST_ID_HEADER
from tierlake.asgi.request_id import current_request_id
from tierlake.errors import AppTierUnavailableError
from tierlake.web import messages

log = structlog.get_logger(__name__)
API_PREFIX = "/api/v1"


class ApiError(Exception):
    """The app tier refused a request (4xx)."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []

    def field_errors(self, form: Mapping[str, str] | None = None) -> dict[str, str]:
        """Sentences for people keyed by form field name (``form``: the page's own wording)."""
        return messages.field_errors(self.fields, form)


def _parse_error(response: httpx.Response) -> ApiError:
    code, message, fields = f"http_{response.status_code}", response.reason_phrase, []
    try:
        body = response.json()
        err = body.get("error", {}) if isinstance(body, dict) else {}
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        fields = [f for f in err.get("fields") or [] if isinstance(f, dict)]
    except ValueError:
        pass
    if code == "invalid_input" and messages.only_path_refused(fields):
        return ApiError(404, "not_found", messages.NOT_FOUND)  # e.g. /orders/0
    if code == "invalid_input":  # the API's summary quotes pydantic: never shown to people
        message = messages.summary(fields)
    return ApiError(response.status_code, code, message, fields)


class ApiClient:
    """One shared async HTTP client per web-tier process (connection pooling)."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "tierlake-web"},
            follow_redirects=False,
        )

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        """The response body (None for 204); raises ApiError or AppTierUnavailableError."""
        return (await self.call(method, path, **kw))[1]

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)`` of a successful call; raises like :meth:`request`."""
        hdrs = dict(headers or {})
        if request_id := current_request_id():  # one id across the tiers' logs
            hdrs[REQUEST_ID_HEADER] = request_id
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        attempts = 2 if method == "GET" or "Idempotency-Key" in hdrs else 1
        for attempt in range(1, attempts + 1):
            try:
                response = await self._client.request(
                    method, path, json=json, params=clean, headers=hdrs
                )
                break
            except httpx.ConnectError as exc:
                if attempt < attempts:
                    continue
                raise self._unavailable(method, path, exc) from exc
            except httpx.HTTPError as exc:
                raise self._unavailable(method, path, exc) from exc
        if response.status_code >= 500:
            log.warning("app.error", method=method, path=path, status=response.status_code)
            raise AppTierUnavailableError(
                f"the app tier answered {response.status_code} to {method} {path}"
            )
        if response.status_code >= 400:
            raise _parse_error(response)
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError as exc:
            raise AppTierUnavailableError(f"the app tier sent non-JSON to {method} {path}") from exc

    def _unavailable(self, method: str, path: str, exc: Exception) -> AppTierUnavailableError:
        log.warning("app.unreachable", method=method, path=path, error=type(exc).__name__)
        return AppTierUnavailableError(
            f"cannot reach the app tier at {self.base_url} ({type(exc).__name__}); "
            "check that it is running and that TIERLAKE_APP_URL is right"
        )

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Any:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Any:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self._client.aclose()
