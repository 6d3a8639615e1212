"""A small client for the KTRDR v1 API that turns transport and HTTP failures into KtrdrError."""

from __future__ import annotations

from typing import Any

from ktrdr.errors import KtrdrError

API_PREFIX = "/api/v1"


class ApiClient:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params or None)

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        return self._request("POST", path, json=payload)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            response = httpx.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.ConnectError as e:
            raise KtrdrError(
                f"cannot connect to the KTRDR API at {self.base_url}: {_reason(e)}; "
                "is the instance up? Check with `ktrdr sandbox status` or `ktrdr config show`"
            ) from e
        except httpx.TimeoutException as e:
            raise KtrdrError(
                f"the KTRDR API at {self.base_url} did not answer within {self.timeout:g}s; "
                "check `ktrdr sandbox status`"
            ) from e
        except httpx.HTTPError as e:
            raise KtrdrError(f"request to {url} failed: {_reason(e)}") from e
        if response.is_error:
            raise KtrdrError(
                f"{method} {url} returned HTTP {response.status_code}: {_server_message(response)}"
            )
        try:
            return response.json()
        except ValueError as e:
            raise KtrdrError(f"{method} {url} returned a body that is not JSON") from e


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def _server_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase or "").strip()[:300] or "no message"
    if isinstance(body, dict):
        detail = body.get("detail", body.get("message", body))
        return str(detail)[:300]
    return str(body)[:300]
