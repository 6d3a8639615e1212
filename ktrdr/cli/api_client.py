"""A small client for the KTRDR v1 API that turns transport and HTTP failures into KtrdrError.

The endpoint methods also check each body's shape against the API contract (ktrdr/api/app.py),
here and only here: -p/-u may point at some other service, and commands (including --json)
must get either the contract's shape or one `Error:` line, never a traceback or a bad body.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ktrdr.errors import KtrdrError

API_PREFIX = "/api/v1"
HEALTH_KEYS = ("status", "version", "database", "instance_id")
WORKER_KEYS = ("worker_id",)
OPERATION_KEYS = ("operation_id", "status")


class ApiClient:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def health(self) -> dict[str, Any]:
        return self._object("/health", self.get("/health"), HEALTH_KEYS)

    def workers(self) -> list[dict[str, Any]]:
        return self._list("/workers", self.get("/workers"), WORKER_KEYS)

    def operations(self, *, status: str | None = None) -> list[dict[str, Any]]:
        body = self.get("/operations", **({"status": status} if status else {}))
        return self._list("/operations", body, OPERATION_KEYS)

    def operation(self, operation_id: str) -> dict[str, Any]:
        from urllib.parse import quote

        path = f"/operations/{quote(operation_id, safe='')}"
        return self._object(path, self.get(path), OPERATION_KEYS)

    def start_operation(self, operation_type: str, params: dict[str, Any]) -> dict[str, Any]:
        body = self.post("/operations", {"operation_type": operation_type, "params": params})
        return self._object("/operations", body, OPERATION_KEYS)

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
        except httpx.InvalidURL as e:  # e.g. too long: not an HTTPError
            raise KtrdrError(f"cannot request {url[:200]}: {_reason(e)}") from e
        if response.is_error:
            raise KtrdrError(
                f"{method} {url} returned HTTP {response.status_code}: {_server_message(response)}"
            )
        try:
            return response.json()
        except ValueError as e:
            raise KtrdrError(f"{method} {url} returned a body that is not JSON") from e

    def _object(self, path: str, body: Any, keys: tuple[str, ...]) -> dict[str, Any]:
        problem = _object_problem(body, keys)
        if problem:
            self._unexpected(path, f"a JSON object with {_quoted(keys)}", problem)
        return dict(body)

    def _list(self, path: str, body: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        expected = f"a JSON list of objects with {_quoted(keys)}"
        if not isinstance(body, list):
            self._unexpected(path, expected, _kind(body))
        for index, item in enumerate(body):
            problem = _object_problem(item, keys)
            if problem:
                self._unexpected(path, expected, f"{problem} at index {index}")
        return list(body)

    def _unexpected(self, path: str, expected: str, got: str) -> NoReturn:
        raise KtrdrError(
            f"unexpected response from {self.base_url}{API_PREFIX}{path}: expected {expected}, "
            f"got {got}; is -p/-u pointing at a KTRDR API? (ktrdr config show)"
        )


def _object_problem(body: Any, keys: tuple[str, ...]) -> str | None:
    """What is wrong with `body` as an object with `keys`, or None. `status` and ids must be
    strings: commands compare them and put them in URLs."""
    if not isinstance(body, dict):
        return _kind(body)
    missing = [key for key in keys if key not in body]
    if missing:
        return f"an object without {_quoted(tuple(missing))}"
    for key in ("status", "operation_id", "worker_id"):
        if key in keys and not isinstance(body[key], str):
            return f'an object whose "{key}" is {_kind(body[key])}'
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else "a value"


def _quoted(keys: tuple[str, ...]) -> str:
    """`"a"`, `"a" and "b"`, `"a", "b" and "c"`."""
    quoted = [f'"{key}"' for key in keys]
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


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
