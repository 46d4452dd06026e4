"""The fake Moodle's HTTP endpoints (a Starlette app).

* ``/webservice/rest/server.php``: Moodle's REST server (GET query and form-encoded or multipart
  POST; a JSON body is ignored, as PHP does not put it in ``$_POST``).
* ``/webservice/upload.php``: draft-area upload with ``token``.
* ``/webservice/pluginfile.php/...``: attachment and backup downloads with ``token`` (GET, HEAD).
* ``/lib/mathjax{2,3,4}/...``, ``/lib/mathjax4-fonts/...``: MathJax from npm, on Moodle's origin.
* ``/theme/...``, ``/lib/javascript.php/...``, ``/lib/ajax/service.php``: page resources.
* ``/login/...``: Moodle's login page (requests are recorded; a PDF showing it is a bug).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from . import errors
from .errors import MoodleError
from .faults import FaultConfig
from .files import attachment_chunks, attachment_size, store_draft
from .images import png
from .php import json_encode, parse_str, serialize_source
from .plugin import schedule_auto_register
from .records import CallRecord, Recorder, redact, token_hash
from .state import Site, Token
from .ws_functions import FUNCTIONS, OTHER_KNOWN_FUNCTIONS, CallContext, call

Endpoint = Callable[[Request, CallRecord], Awaitable[Response]]
LOG = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
THEME_CSS = (ASSETS / "theme.css").read_text()
LOGIN_PAGE = (ASSETS / "login.html").read_text()
INDEX_PAGE = (ASSETS / "index.html").read_text()
AJAX_JS = (ASSETS / "ajax.js").read_text()

PARAM_FILE_RE = re.compile(r"[\x00-\x1f\x7f&<>\"`|':\\/]")


def _php_form_pairs(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in items if isinstance(v, str)]


def _error_page(status: int) -> str:
    reason = {
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    text = f"{status} {reason.get(status, 'Error')}"
    return f"<!DOCTYPE html><html><head><title>{text}</title></head><body><h1>{text}</h1></body>\n"


class FakeMoodleApp:
    """The Starlette app around a :class:`Site`, a :class:`FaultConfig` and a :class:`Recorder`."""

    def __init__(
        self, site: Site, faults: FaultConfig, recorder: Recorder, mathjax_root: Path | None
    ) -> None:
        self.site = site
        self.faults = faults
        self.recorder = recorder
        self.mathjax_root = mathjax_root
        self._stop_flag = False
        self.app = Starlette(
            routes=[
                Route(
                    "/webservice/rest/server.php",
                    self._wrap("rest", self.rest),
                    methods=["GET", "POST"],
                ),
                Route(
                    "/webservice/upload.php",
                    self._wrap("upload", self.upload),
                    methods=["GET", "POST"],
                ),
                Route(
                    "/webservice/pluginfile.php/{path:path}",
                    self._wrap("pluginfile", self.pluginfile),
                    methods=["GET", "HEAD", "POST"],
                ),
                Route(
                    "/lib/{which:str}/{path:path}",
                    self._wrap("lib", self.lib),
                    methods=["GET", "HEAD", "POST"],
                ),
                Route(
                    "/theme/{script:str}/{path:path}",
                    self._wrap("static", self.theme),
                    methods=["GET", "HEAD"],
                ),
                Route(
                    "/login/{path:path}",
                    self._wrap("login", self.login),
                    methods=["GET", "POST", "HEAD"],
                ),
                Route("/", self._wrap("static", self.index), methods=["GET", "HEAD"]),
                Route(
                    "/{path:path}",
                    self._wrap("other", self.not_found),
                    methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
                ),
            ]
        )

    def stop(self) -> None:
        """Release requests that hang on purpose (server shutdown)."""
        self._stop_flag = True

    # -- common request handling --------------------------------------------------------------

    def _wrap(self, endpoint: str, handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            started = time.time()
            record = CallRecord(
                time=started,
                endpoint=endpoint,
                method=request.method,
                path=request.url.path,
                params=redact(dict(parse_qsl(request.url.query, keep_blank_values=True))),
            )
            if endpoint == "lib" and request.path_params.get("which", "").startswith("mathjax"):
                record.endpoint = "mathjax"
            elif endpoint == "lib":
                record.endpoint = "static"
            self.recorder.add(record)
            try:
                response = await self._guarded(request, record, handler)
            except Exception as exc:  # a bug in the fake: answer like a PHP fatal error
                LOG.exception("fake Moodle failed on %s %s", request.method, request.url.path)
                record.notes.append(f"fake moodle error: {exc!r}")
                response = Response(_error_page(500), status_code=500, media_type="text/html")
            record.http_status = response.status_code
            record.duration = time.time() - started
            return response

        return run

    def _targets(self, request: Request, record: CallRecord) -> list[str]:
        if record.endpoint == "rest":
            return ["rest"]
        if record.endpoint == "pluginfile":
            parts = request.path_params.get("path", "").split("/")
            kind = "backup" if len(parts) > 1 and parts[1] == "backup" else "attachment"
            return [f"pluginfile:{kind}", "pluginfile"]
        return [record.endpoint]

    async def _hang(self) -> None:
        while not self._stop_flag and self.faults.is_down == "hang":
            await asyncio.sleep(0.05)

    async def _guarded(self, request: Request, record: CallRecord, handler: Endpoint) -> Response:
        if self.faults.is_down == "hang":
            record.fault = "down:hang"
            await self._hang()
        targets = self._targets(request, record)
        target_line = len(request.url.path) + len(request.url.query) + 1
        if request.method == "GET" and target_line > self.site.config.max_request_line:
            record.fault = "uri-too-long"
            return Response(
                "<!DOCTYPE HTML><html><head><title>414 Request-URI Too Long</title></head>"
                "<body><h1>Request-URI Too Long</h1></body></html>\n",
                status_code=414,
                media_type="text/html",
            )
        if record.endpoint != "rest":  # REST knows its targets only after parsing the body
            injected = await self._inject(targets, record)
            if injected is not None:
                return injected
        return await handler(request, record)

    async def _inject(self, targets: list[str], record: CallRecord) -> Response | None:
        """Apply configured latency, then a pending HTTP failure for these targets, if any."""
        delay = self.faults.latency_for(targets)
        failure = self.faults.take_failure(targets)
        if delay:
            await asyncio.sleep(delay)
        if failure is None:
            return None
        record.fault = f"http:{failure.status}"
        body = failure.body or _error_page(failure.status)
        return Response(body, status_code=failure.status, media_type="text/html")

    async def _params(
        self, request: Request
    ) -> tuple[dict[Any, Any], dict[Any, Any], list[UploadFile], int]:
        """PHP's ``$_GET``, ``$_POST``, ``$_FILES`` and the body size."""
        get = parse_str(parse_qsl(request.url.query, keep_blank_values=True))
        post_pairs: list[tuple[str, str]] = []
        files: list[UploadFile] = []
        size = int(request.headers.get("content-length") or 0)
        if request.method == "POST":
            ctype = request.headers.get("content-type", "")
            limit = self.faults.post_max_size
            if limit is not None and size > limit:
                async for _ in request.stream():  # PHP reads and discards the body
                    pass
                return get, {}, [], size
            if ctype.startswith("application/x-www-form-urlencoded"):
                body = await request.body()
                size = len(body)
                post_pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            elif ctype.startswith("multipart/form-data"):
                form = await request.form(max_files=100, max_fields=10000)
                items = list(form.multi_items())
                post_pairs = _php_form_pairs(items)
                files = [v for _, v in items if isinstance(v, UploadFile)]
            else:
                await request.body()
        return get, parse_str(post_pairs), files, size

    def _authenticate(self, token: Any) -> Token:
        """``webservice::authenticate_user()`` for a permanent token."""
        site = self.site
        with site.lock:
            row = site.tokens.get(token) if isinstance(token, str) else None
            if row is None:
                raise errors.invalid_token()
            if row.validuntil and row.validuntil < site.clock.now():
                site.delete_token(row.token)
                raise errors.token_expired()
            return row

    def _ajax_error(self, exc: MoodleError, record: CallRecord, media: str) -> Response:
        """An exception as upload.php / pluginfile.php (AJAX scripts) print it."""
        record.errorcode = record.response_status = exc.errorcode
        body = json_encode(exc.ajax_object(self.site.config.debug, self.site.config.wwwroot))
        return Response(body, status_code=exc.http_status, media_type=media)

    def _file_token(self, get: dict[Any, Any], post: dict[Any, Any], record: CallRecord) -> Token:
        """``required_param('token', PARAM_ALPHANUM)`` plus authentication, noted in the record."""
        token = post.get("token", get.get("token"))
        if not isinstance(token, str) or token == "":
            raise errors.missing_param("token")
        token = re.sub(r"[^A-Za-z0-9]", "", token)
        record.token_hash = token_hash(token)
        record.token_valid = self.site.token_usable(token)
        job = self.site.job_by_token(token)
        if job is not None:
            record.jobid, record.taskid = job.jobid, job.taskid
        return self._authenticate(token)

    # -- REST ---------------------------------------------------------------------------------

    async def rest(self, request: Request, record: CallRecord) -> Response:
        get, post, _files, size = await self._params(request)
        record.bytes_in = size
        params: dict[Any, Any] = {**get, **post}
        restformat = params.pop("moodlewsrestformat", None)
        fmt = restformat if restformat in ("json", "xml") else "xml"
        token = params.pop("wstoken", None)
        function = params.pop("wsfunction", None)
        for key in [k for k in params if isinstance(k, str) and k.startswith("moodlewssetting")]:
            params.pop(key)
        record.wsfunction = function if isinstance(function, str) else None
        record.params = redact({**get, **post})
        if isinstance(token, str):
            record.token_hash = token_hash(token)
            record.token_valid = self.site.token_usable(token)
            job = self.site.job_by_token(token)
            if job is not None:
                record.jobid, record.taskid = job.jobid, job.taskid
        if record.jobid is None:
            for key in ("jobid", "uuid"):
                if isinstance(params.get(key), str):
                    record.jobid = params[key]

        targets = [
            t
            for t in (
                record.wsfunction,
                "report" if record.wsfunction in REPORT_FUNCTIONS else None,
                "rest",
            )
            if t
        ]
        injected = await self._inject(targets, record)
        if injected is not None:
            return injected

        trailer = ""
        try:
            row = self._authenticate(token)
            if not function:
                raise errors.invalid_parameter("Missing function name")
            fn = FUNCTIONS.get(function) if isinstance(function, str) else None
            if fn is None:
                if function in OTHER_KNOWN_FUNCTIONS:
                    raise errors.function_not_allowed(str(function))
                raise errors.unknown_function(str(function))
            if fn.service != row.service:
                raise errors.function_not_allowed(fn.name)
            ctx = CallContext(self.site, token, self.faults, record)
            try:
                # Function bodies hash files and render pages: keep them off the event loop.
                result = await asyncio.to_thread(call, fn, ctx, params)
            finally:  # the first call carrying a job id starts the (delayed) row insertion
                self._maybe_auto_register(token, params)
            if fn.report:
                trailer = self.site.config.report_trailer
        except MoodleError as exc:
            record.errorcode = exc.errorcode
            record.response_status = exc.errorcode
            debug = self.site.config.debug
            if fmt == "json":
                return Response(
                    json_encode(exc.rest_object(debug)),
                    media_type="application/json",
                    headers=_REST_HEADERS,
                )
            return Response(
                exc.rest_xml(debug), media_type="application/xml", headers=_REST_HEADERS
            )
        record.response_status = result.get("status")
        lost = self.faults.take_lost_answer(targets)
        if lost is not None:  # done, but the caller gets an error page instead of the result
            record.fault = f"lost-answer:{lost.status}"
            return Response(_error_page(lost.status), status_code=lost.status,
                            media_type="text/html")  # fmt: skip
        if fmt == "json":
            body = json_encode(result) + trailer
            record.bytes_out = len(body)
            return Response(body, media_type="application/json", headers=_REST_HEADERS)
        return Response(_xml_response(result), media_type="application/xml", headers=_REST_HEADERS)

    def _maybe_auto_register(self, token: str, params: dict[Any, Any]) -> None:
        job = self.site.job_by_token(token)
        if job is None or job.registered or job.auto_register_after is None:
            return
        jobid = params.get("jobid") if job.protocol == "quiz_archiver" else params.get("uuid")
        if isinstance(jobid, str) and jobid:
            schedule_auto_register(self.site, job, jobid)

    # -- upload.php ---------------------------------------------------------------------------

    async def upload(self, request: Request, record: CallRecord) -> Response:
        get, post, files, size = await self._params(request)
        record.bytes_in = size
        record.params = redact({**get, **post, "files": [f.filename for f in files]})
        media = "text/plain" if files else "application/json"

        def fail(exc: MoodleError) -> Response:
            return self._ajax_error(exc, record, media)

        try:
            row = self._file_token(get, post, record)
        except MoodleError as exc:
            return fail(exc)
        filepath = post.get("filepath", get.get("filepath", "/"))
        filepath = filepath if isinstance(filepath, str) and filepath.startswith("/") else "/"
        if not filepath.endswith("/"):
            filepath += "/"
        raw_itemid = post.get("itemid", get.get("itemid", "0"))
        try:
            itemid = int(str(raw_itemid).strip() or 0)
        except ValueError:
            itemid = 0
        user = self.site.users[row.userid]
        max_ini = self.faults.upload_max_filesize
        maxbytes = self.faults.max_upload_bytes
        results: list[dict[str, Any]] = []
        accepted: list[tuple[UploadFile, str]] = []
        for upload in files:
            if max_ini is not None and (upload.size or 0) > max_ini:
                return fail(errors.upload_ini_size())
            filename = PARAM_FILE_RE.sub("", upload.filename or "")
            if filename in (".", ".."):
                filename = ""
            if maxbytes is not None and (upload.size or 0) > maxbytes:
                results.append(
                    {
                        "filename": filename,
                        "errortype": "fileoversized",
                        "error": "This file is bigger than the maximum size",
                    }
                )
            else:
                accepted.append((upload, filename))
                results.append({})
        if itemid <= 0:
            itemid = secrets.randbelow(999_999_999) + 1
        slot = 0
        for index, entry in enumerate(results):
            if entry:
                continue
            upload, filename = accepted[slot]
            slot += 1
            upload.file.seek(0)
            draft = await asyncio.to_thread(
                store_draft,
                self.site,
                userid=user.id,
                contextid=user.contextid,
                itemid=itemid,
                filepath=filepath,
                filename=filename,
                source=upload.file,
            )
            if draft is None:
                results[index] = {
                    "filename": filename,
                    "errortype": "filenameexist",
                    "error": f"File name already exists: {filename}",
                }
                continue
            results[index] = {
                "component": "user",
                "contextid": user.contextid,
                "userid": str(user.id),
                "filearea": "draft",
                "filename": filename,
                "filepath": filepath,
                "itemid": itemid,
                "license": "unknown",
                "author": user.fullname,
                "source": serialize_source(filename),
                "filesize": draft.size,
            }
        record.response_status = (
            "OK"
            if results and all("errortype" not in r for r in results)
            else (results[0].get("errortype") if results else "nofiles")
        )
        return Response(json_encode(results), media_type=media)

    # -- pluginfile.php -----------------------------------------------------------------------

    async def pluginfile(self, request: Request, record: CallRecord) -> Response:
        get, post, _files, _size = await self._params(request)

        def fail(exc: MoodleError) -> Response:
            return self._ajax_error(exc, record, "application/json")

        try:
            self._file_token(get, post, record)
        except MoodleError as exc:
            return fail(exc)
        parts = [unquote(p) for p in request.path_params["path"].split("/") if p]
        forcedownload = str(get.get("forcedownload", post.get("forcedownload", ""))) not in (
            "",
            "0",
        )
        site = self.site
        now = site.clock.now()
        if len(parts) == 4 and parts[1] == "backup":
            ctx, area, filename = parts[0], parts[2], parts[3]
            with site.lock:
                backup = next(
                    (
                        b
                        for b in site.backups.values()
                        if str(b.contextid) == ctx
                        and b.type == area
                        and b.filename == filename
                        and not b.deleted
                        and b.state(now) == "ok"
                    ),
                    None,
                )
                job = next(
                    (j for j in site.jobs if backup is not None and backup in j.backups), None
                )
            if backup is None:
                return fail(errors.file_not_found())
            if job is not None:
                record.jobid, record.taskid = job.jobid, job.taskid
            headers = _file_headers(filename, len(backup.content), forcedownload)
            record.response_status = "OK"
            if request.method == "HEAD":
                return Response(b"", media_type="application/vnd.moodle.backup", headers=headers)
            record.bytes_out = len(backup.content)
            return Response(
                backup.content, media_type="application/vnd.moodle.backup", headers=headers
            )
        if len(parts) == 7 and parts[1:3] == ["question", "response_attachments"]:
            ctx, usage, slot, itemid, filename = parts[0], parts[3], parts[4], parts[5], parts[6]
            found = None
            with site.lock:
                for quiz in site.quizzes.values():
                    for attempt in quiz.attempts:
                        for att in attempt.attachments:
                            if (
                                str(att.contextid),
                                str(att.usageid),
                                str(att.slot),
                                str(att.itemid),
                                att.filename,
                            ) == (
                                ctx,
                                usage,
                                slot,
                                itemid,
                                filename,
                            ):
                                found = att
            if found is None:
                return fail(errors.file_not_found())
            size = attachment_size(found, self.faults)
            headers = _file_headers(filename, size, forcedownload)
            record.response_status = "OK"
            if request.method == "HEAD":
                return Response(b"", media_type=found.mimetype, headers=headers)
            record.bytes_out = size
            return StreamingResponse(
                attachment_chunks(found, self.faults), media_type=found.mimetype, headers=headers
            )
        return fail(errors.file_not_found())

    # -- page resources -----------------------------------------------------------------------

    async def lib(self, request: Request, record: CallRecord) -> Response:
        which = request.path_params["which"]
        path = request.path_params["path"]
        if which.startswith("mathjax"):
            return await self._mathjax(which, path, record)
        if which == "javascript.php":
            if path.endswith("fakemoodle/ajax.js"):
                return Response(AJAX_JS, media_type="application/javascript")
            return Response("// fake Moodle: empty module\n", media_type="application/javascript")
        if which == "ajax" and path == "service.php":
            body = {
                "error": "Web service requires login",
                "errorcode": "servicerequireslogin",
                "stacktrace": None,
                "debuginfo": None,
                "reproductionlink": None,
            }
            return Response(json_encode(body), media_type="application/json")
        return await self.not_found(request, record)

    async def _mathjax(self, which: str, path: str, record: CallRecord) -> Response:
        mode = self.faults.mathjax
        if mode == "hang":
            record.fault = "mathjax:hang"
            while not self._stop_flag and self.faults.mathjax == "hang":
                await asyncio.sleep(0.05)
        if mode == "missing":
            record.fault = "mathjax:missing"
            return Response("Not found", status_code=404, media_type="text/plain")
        roots = {
            "mathjax2": "mathjax2",
            "mathjax3": "mathjax3",
            "mathjax4": "mathjax4",
            "mathjax4-fonts": "@mathjax",
        }
        if self.mathjax_root is None or which not in roots:
            return Response("Not found", status_code=404, media_type="text/plain")
        base = (self.mathjax_root / roots[which]).resolve()
        target = (base / path).resolve()
        if not str(target).startswith(str(base) + os.sep) or not target.is_file():
            record.notes.append("mathjax file not found")
            return Response("Not found", status_code=404, media_type="text/plain")
        media = "application/javascript" if target.suffix in (".js", ".mjs", ".cjs") else None
        return FileResponse(
            target, media_type=media, headers={"Cache-Control": "public, max-age=3600"}
        )

    async def theme(self, request: Request, record: CallRecord) -> Response:
        script, path = request.path_params["script"], request.path_params["path"]
        if script == "styles.php":
            return Response(THEME_CSS, media_type="text/css")
        if script == "image.php":
            return Response(png(16, 16, "", (15, 108, 191)), media_type="image/png")
        if script == "yui_combo.php":
            return Response("/* fake yui */\n", media_type="text/css")
        del path
        return await self.not_found(request, record)

    async def login(self, request: Request, record: CallRecord) -> Response:
        return Response(LOGIN_PAGE, media_type="text/html")

    async def index(self, request: Request, record: CallRecord) -> Response:
        return Response(INDEX_PAGE, media_type="text/html")

    async def not_found(self, request: Request, record: CallRecord) -> Response:
        record.notes.append("not found")
        return Response("Not found", status_code=404, media_type="text/plain")


REPORT_FUNCTIONS = frozenset(name for name, fn in FUNCTIONS.items() if fn.report)

_REST_HEADERS = {
    "Cache-Control": "private, must-revalidate, pre-check=0, post-check=0, max-age=0",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
    "Pragma": "no-cache",
    "Accept-Ranges": "none",
    "Access-Control-Allow-Origin": "*",
}


def _file_headers(filename: str, size: int, forcedownload: bool) -> dict[str, str]:
    disposition = "attachment" if forcedownload else "inline"
    return {
        "Content-Length": str(size),
        "Content-Disposition": f'{disposition}; filename="{filename}"',
        "Cache-Control": "private, max-age=10, no-transform",
        "Accept-Ranges": "none",
        "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
    }


def _xml_value(value: Any) -> str:
    if isinstance(value, dict):
        keys = "".join(f'<KEY name="{k}">{_xml_value(v)}</KEY>\n' for k, v in value.items())
        return f"\n<SINGLE>\n{keys}</SINGLE>\n"
    if isinstance(value, list):
        return "\n<MULTIPLE>\n" + "".join(_xml_value(v) for v in value) + "</MULTIPLE>\n"
    if value is None:
        return '<VALUE null="null"/>'
    if isinstance(value, bool):
        value = int(value)
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<VALUE>{text}</VALUE>"


def _xml_response(result: dict[str, Any]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>' + _xml_value(result) + "</RESPONSE>\n"
    )
