"""Transport to Moodle's web services: REST calls, file downloads and upload.php.

Conventions (spec 3.1): form-encoded POST to the REST endpoint with `wstoken`,
`moodlewsrestformat=json` and `wsfunction`; arrays as `name[]`, structures as
`name[key]`, booleans as 1/0; files use the parameter `token`. Moodle reports
errors as HTTP 200 with an error object, which becomes `MoodleException`.
Transport errors and 5xx answers are retried with exponential backoff.
No exception message or log line here ever contains the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from .http_session import ExplicitVerifySession, configure
from .logs import register_secret
from .multipart_body import MultipartBody
from .task import ArchiveTask, MoodleEndpoints

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "moodle-archive-operator"
# Moodle answers a failed file request with a small JSON error instead of the file.
ERROR_BODY_SNIFF_BYTES = 10 * 1024
_CHUNK = 1024 * 1024


class MoodleError(Exception):
    """Anything that went wrong talking to Moodle; the message is safe to show and log."""


class MoodleUnreachable(MoodleError):
    """Transport failure (connection refused, DNS, timeout) after all retries."""


class MoodleServerError(MoodleError):
    """Moodle answered with HTTP 5xx after all retries, or with something that is not JSON."""


class MoodleException(MoodleError):
    """Moodle's own error object: `{"exception", "errorcode", "message", "debuginfo"}`."""

    def __init__(self, function: str, errorcode: str, message: str, debuginfo: str = "") -> None:
        detail = f": {debuginfo}" if debuginfo else ""
        super().__init__(f"Moodle rejected {function} with {errorcode!r} ({message}{detail})")
        self.function = function
        self.errorcode = errorcode
        self.debuginfo = debuginfo


class MoodleStatusError(MoodleError):
    """A plugin function answered with an `E_*` status instead of `OK`."""

    def __init__(self, function: str, status: str) -> None:
        super().__init__(f"Moodle answered {function} with status {status}")
        self.function = function
        self.status = status


class MoodleResponseInvalid(MoodleError):
    """Moodle's answer does not have the shape the protocol promises."""


class DownloadError(MoodleError):
    pass


class UploadRefused(MoodleError):
    """upload.php (or the web server in front of it) refused the file, e.g. `fileoversized`."""

    def __init__(self, errortype: str, message: str) -> None:
        super().__init__(message)
        self.errortype = errortype


class ProbeFailed(MoodleError):
    pass


class UploadedFile(BaseModel):
    """One entry of upload.php's answer (spec 3.7 and 12: `userid` arrives as a string)."""

    model_config = ConfigDict(extra="ignore")

    component: str
    contextid: int
    userid: int
    filearea: str
    filename: str
    filepath: str
    itemid: int


def strip_token_from_url(url: str) -> str:
    """A URL fit for messages and logs: no query string, no credentials."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Moodle's PHP-style form encoding: `a[]=1&a[]=2`, `s[key]=1`, booleans as 1/0."""
    out: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if isinstance(value, bool):
            out.append((name, "1" if value else "0"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                add(f"{name}[{key}]", item)
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            for item in value:
                add(f"{name}[]", item)
        elif value is None:
            return
        else:
            out.append((name, str(value)))

    for key, value in params.items():
        add(key, value)
    return out


def decode_first_json(text: str) -> Any:
    """Decode the first JSON value and ignore what follows (the stray `</body></html>`, spec 12)."""
    stripped = text.lstrip()
    if stripped.startswith("<") and not stripped.startswith(("{", "[")):
        # Some Moodle versions wrap the JSON in markup: skip to the first JSON value.
        starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
        stripped = stripped[min(starts):] if starts else stripped
    value, _ = json.JSONDecoder().raw_decode(stripped)
    return value


def _raise_if_moodle_error(function: str, data: Any) -> None:
    if is_moodle_error(data):
        raise MoodleException(
            function,
            str(data.get("errorcode")),
            str(data.get("message", "")),
            str(data.get("debuginfo", "") or ""),
        )


def is_moodle_error(data: Any) -> bool:
    return isinstance(data, dict) and "errorcode" in data and (
        "exception" in data or "debuginfo" in data or "message" in data
    )


class MoodleClient:
    """One task's connection to Moodle, holding its token."""

    def __init__(
        self,
        endpoints: MoodleEndpoints,
        token: SecretStr | str,
        *,
        retries: int = 4,
        backoff_sec: float = 0.5,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        transfer_timeout: float = 1800,
        verify_tls: bool = True,
        proxies: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoints = endpoints
        self._token = token.get_secret_value() if isinstance(token, SecretStr) else token
        register_secret(self._token)
        self.retries = retries
        self.backoff_sec = backoff_sec
        self.timeout = (connect_timeout, read_timeout)
        self.transfer_timeout = (connect_timeout, transfer_timeout)
        self._sleep = sleep
        # A borrowed session (the gateway's probes reuse connections) is not closed here.
        self._owns_session = session is None
        self.session = configure(
            session or ExplicitVerifySession(), verify=verify_tls, proxies=proxies
        )
        self.session.headers["User-Agent"] = USER_AGENT

    def close(self) -> None:
        if self._owns_session:
            self.session.close()
        else:
            self.session.cookies.clear()  # nothing of one task carries over to the next

    # --- retries -------------------------------------------------------------------------------

    def _with_retries(
        self,
        what: str,
        attempt: Callable[[], T],
        *,
        retry_reads: bool = True,
        retry_server_errors: bool = True,
    ) -> T:
        """Run `attempt`, retrying transport errors and 5xx with exponential backoff.

        `retry_reads=False`: a request that was sent but not answered in time is not sent
        again; `retry_server_errors=False`: nor one answered 5xx (a proxy's 502/504 may
        come while PHP goes on and does the work)."""
        delay = self.backoff_sec
        started = time.monotonic()
        for round_ in range(self.retries + 1):
            last = round_ == self.retries
            try:
                return attempt()
            except (requests.ConnectionError, requests.Timeout) as exc:
                cause = self._transport_cause(exc)
                if last or (isinstance(exc, requests.ReadTimeout) and not retry_reads):
                    raise MoodleUnreachable(
                        unreachable_message(what, time.monotonic() - started, cause)
                    ) from None
                log.warning(
                    "Moodle unreachable, retrying",
                    extra={"fields": {"call": what, "retry_in_sec": delay, "error": cause}},
                )
            except MoodleServerError as exc:
                if last or not retry_server_errors:
                    raise
                log.warning("Moodle server error, retrying",
                            extra={"fields": {"call": what, "retry_in_sec": delay,
                                              "error": str(exc)}})
            self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _transport_cause(self, exc: Exception) -> str:
        if isinstance(exc, requests.ConnectTimeout):
            return f"no connection within {self.timeout[0]:g} s"
        if isinstance(exc, requests.ReadTimeout):
            limit = _READ_TIMEOUT.search(str(exc))
            return f"no answer within {float(limit.group(1)):g} s" if limit else "no answer in time"
        return transport_cause(exc)

    def silent_because(self, timeout_sec: float = 10.0) -> str | None:
        """Why Moodle's site does not answer at all (a GET of its base URL), or None if it
        answers anything. Tells "Moodle is down" from a problem of one page or one file."""
        try:
            self.session.get(
                self.endpoints.base_url,
                timeout=(self.timeout[0], min(self.timeout[1], timeout_sec)),
                allow_redirects=False,
                stream=True,
            ).close()
        except (requests.ConnectionError, requests.Timeout) as exc:
            return self._transport_cause(exc)
        return None

    # --- REST ----------------------------------------------------------------------------------

    def call(
        self,
        function: str,
        params: Mapping[str, Any] | None = None,
        *,
        transfer: bool = False,
        idempotent: bool = True,
        retries: int | None = None,
    ) -> Any:
        """Call a web-service function; Moodle error objects raise MoodleException."""
        form = [
            ("wstoken", self._token),
            ("moodlewsrestformat", "json"),
            ("wsfunction", function),
            *encode_params(params or {}),
        ]
        timeout = self.transfer_timeout if transfer else self.timeout

        def attempt() -> Any:
            response = self.session.post(self.endpoints.ws_url, data=form, timeout=timeout)
            if response.status_code >= 500:
                raise MoodleServerError(f"{function}: Moodle answered HTTP {response.status_code}")
            if response.status_code >= 400:
                raise MoodleResponseInvalid(
                    f"{function}: Moodle answered HTTP {response.status_code}"
                )
            try:
                return decode_first_json(response.text)
            except ValueError:
                raise MoodleServerError(f"{function}: Moodle's answer is not JSON") from None

        saved = self.retries
        if retries is not None:
            self.retries = retries
        try:
            data = self._with_retries(
                function, attempt, retry_reads=idempotent, retry_server_errors=idempotent
            )
        finally:
            self.retries = saved
        _raise_if_moodle_error(function, data)
        return data

    # --- files ---------------------------------------------------------------------------------

    def _file_params(self) -> dict[str, str]:
        return {"token": self._token, "forcedownload": "1"}

    def head(self, url: str) -> tuple[str, int | None]:
        """Content type and length of a file, without downloading it (redirects followed)."""
        safe_url = strip_token_from_url(url)

        def attempt() -> tuple[str, int | None]:
            response = self.session.head(
                url, params=self._file_params(), timeout=self.timeout, allow_redirects=True
            )
            if response.status_code >= 500:
                raise MoodleServerError(f"HEAD {safe_url}: HTTP {response.status_code}")
            if response.status_code >= 400:
                raise DownloadError(f"HEAD {safe_url}: HTTP {response.status_code}")
            length = response.headers.get("Content-Length")
            ctype = response.headers.get("Content-Type", "").split(";")[0].strip()
            return ctype, int(length) if length and length.isdigit() else None

        return self._with_retries(f"HEAD {safe_url}", attempt)

    def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        expected_sha1: str | None = None,
    ) -> int:
        """Stream a file to `dest`; enforce the size cap and the SHA-1; return its size."""
        safe_url = strip_token_from_url(url)

        def attempt() -> int:
            sha1 = hashlib.sha1()  # noqa: S324 - Moodle's contenthash is SHA-1
            size = 0
            with self.session.get(
                url, params=self._file_params(), timeout=self.transfer_timeout, stream=True
            ) as response:
                if response.status_code >= 500:
                    raise MoodleServerError(f"download {safe_url}: HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise DownloadError(f"download {safe_url}: HTTP {response.status_code}")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadError(
                        f"download {safe_url}: file of {declared} bytes exceeds the limit of "
                        f"{max_bytes} bytes"
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                with dest.open("wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadError(
                                f"download {safe_url}: file exceeds the limit of {max_bytes} bytes"
                            )
                        sha1.update(chunk)
                        out.write(chunk)
            if size < ERROR_BODY_SNIFF_BYTES:
                _raise_if_error_body(dest, safe_url)
            if expected_sha1 is not None and sha1.hexdigest() != expected_sha1.lower():
                raise DownloadError(
                    f"download {safe_url}: SHA-1 mismatch, expected {expected_sha1}, "
                    f"got {sha1.hexdigest()}"
                )
            return size

        try:
            return self._with_retries(f"download {safe_url}", attempt)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def upload_body(
        self, filename: str, itemid: int, path: Path | None = None, offset: int = 0,
        length: int = 0, content_type: str = "application/zip",
    ) -> MultipartBody:
        """upload.php's request body for `length` bytes of `path` from `offset` (spec 3.7)."""
        fields = {"token": self._token, "filepath": "/", "itemid": str(itemid)}
        return MultipartBody(fields, "file_1", filename, content_type, path, offset, length)

    def upload(
        self,
        path: Path,
        filename: str,
        *,
        itemid: int = 0,
        offset: int = 0,
        length: int | None = None,
        content_type: str = "application/zip",
        resend_ok: bool = False,
    ) -> UploadedFile | None:
        """POST `length` bytes of `path` from `offset` to upload.php as `filename`, into draft
        area `itemid` (0: a fresh one). The body is streamed, never held in memory.

        With `resend_ok`, a request whose answer was lost is sent again, and Moodle's
        `filenameexist` for a resent file means an earlier send stored it: None is returned.
        """
        safe_url = strip_token_from_url(self.endpoints.upload_url)
        size = path.stat().st_size - offset if length is None else length
        sends = 0

        def attempt() -> Any:
            nonlocal sends
            sends += 1
            body = self.upload_body(filename, itemid, path, offset, size, content_type)
            response = self.session.post(
                self.endpoints.upload_url,
                data=body,
                headers={"Content-Type": body.content_type},
                timeout=self.transfer_timeout,
            )
            if response.status_code >= 500:
                raise MoodleServerError(f"upload to {safe_url}: HTTP {response.status_code}")
            if response.status_code == 413:
                raise UploadRefused(
                    "request_too_large",
                    f"upload to {safe_url}: HTTP 413, a request of {len(body)} bytes is larger "
                    "than the web server or a proxy in front of Moodle accepts",
                )
            if response.status_code >= 400:
                raise MoodleResponseInvalid(f"upload to {safe_url}: HTTP {response.status_code}")
            try:
                return decode_first_json(response.text)
            except ValueError:
                raise MoodleServerError(f"upload to {safe_url}: answer is not JSON") from None

        data = self._with_retries(f"upload to {safe_url}", attempt, retry_reads=resend_ok)
        _raise_if_moodle_error("upload.php", data)
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
            raise MoodleResponseInvalid("upload.php returned an invalid response")
        entry = data[0]
        if "errortype" in entry or "error" in entry:
            errortype = str(entry.get("errortype", "error"))
            if errortype == "filenameexist" and resend_ok and sends > 1:
                return None
            raise UploadRefused(
                errortype,
                f"Moodle refused the upload of {entry.get('filename', filename)}: "
                f"{errortype} ({entry.get('error', '')})",
            )
        try:
            return UploadedFile.model_validate(entry)
        except ValidationError as exc:
            missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise MoodleResponseInvalid(f"upload.php response lacks or mangles {missing}") from None


def probe_connection(task: ArchiveTask, token: str, timeout_sec: float = 8.0) -> None:
    """See `moodle_api.probe_connection` (re-exported here for the gateway)."""
    from .moodle_api import probe_connection as probe

    probe(task, token, timeout_sec)


def _raise_if_error_body(path: Path, safe_url: str) -> None:
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(data, dict) and "errorcode" in data:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"download {safe_url}: Moodle sent error {data.get('errorcode')!r} instead of the file"
        )


def transport_cause(exc: BaseException) -> str:
    """What a failed connection to Moodle ran into, in a few words."""
    text = str(exc).lower()
    for needle, cause in _TRANSPORT_CAUSES:
        if needle in text:
            return cause
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    return "could not connect"


_READ_TIMEOUT = re.compile(r"read timeout=([0-9.]+)")
_TRANSPORT_CAUSES = (
    ("connection refused", "connection refused"),
    ("name or service not known", "host name not resolved"),
    ("failed to resolve", "host name not resolved"),
    ("temporary failure in name resolution", "host name not resolved"),
    ("connection reset", "connection reset"),
    ("remotedisconnected", "connection closed without an answer"),
    ("remote end closed connection", "connection closed without an answer"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("certificate verify failed", "TLS certificate not trusted"),
    ("sslerror", "TLS error"),
)


def unreachable_message(what: str, waited_sec: float, cause: str) -> str:
    """'Moodle did not answer <call> for <duration> (<cause>)'."""
    return f"Moodle did not answer {what} for {format_duration(waited_sec)} ({cause})"


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
