"""The web tier's client for the app tier's JSON API (``<app_url>/api/v1``).

An API error becomes :class:`ApiError` (status, code, message, field errors);
an app tier that cannot be reached, times out or answers 5xx becomes
:class:`~tierlake.errors.AppTierUnavailableError`, which the web tier shows as
a friendly 503 page.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from tierlake.errors import AppTierUnavailableError

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

    def field_errors(self) -> dict[str, str]:
        """Field messages keyed by the form field name (last part of ``body.shipping.city``)."""
        out: dict[str, str] = {}
        for item in self.fields:
            name = str(item.get("field", "")).rsplit(".", 1)[-1]
            if name and name not in out:
                out[name] = _readable(str(item.get("message") or "is not valid"))
        return out


def _readable(message: str) -> str:
    """``value is not a valid email address: An email ...`` -> ``An email ...``."""
    if message.startswith("value is not a valid") and ": " in message:
        message = message.split(": ", 1)[1]
    return message[:1].upper() + message[1:]


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
