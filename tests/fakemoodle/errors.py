"""Moodle exceptions and the two shapes in which Moodle reports them.

* REST web services (``webservice/rest/server.php``): ``{"exception", "errorcode", "message"}``
  plus ``"debuginfo"`` when the site has debugging on; always HTTP 200.
* AJAX scripts (``webservice/upload.php``, ``webservice/pluginfile.php``): the AJAX renderer's
  fatal error ``{"error", "errorcode", "stacktrace", "debuginfo", "reproductionlink"}``.

Class names are those of Moodle 5.0 (core exceptions live in ``core\\exception``), messages are
Moodle's English strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACCESS_DENIED_FUNCTION_DEBUGINFO = (
    "Access to the function {name}() is not allowed.\n"
    "                There could be multiple reasons for this:\n"
    "                1. The service linked to the user token does not contain the function.\n"
    "                2. The service is user-restricted and the user is not listed.\n"
    "                3. The service is IP-restricted and the user IP is not listed.\n"
    "                4. The service is time-restricted and the time has expired.\n"
    "                5. The token is time-restricted and the time has expired.\n"
    "                6. The service requires a specific capability which the user does not have.\n"
    "                7. The function is called with username/password (no user token is sent)\n"
    "                and none of the services has the function to allow the user.\n"
    "                These settings can be found in Administration > Site administration\n"
    "                > Server > Web services > External services and Manage tokens."
)


@dataclass
class MoodleError(Exception):
    """A Moodle exception as the web service layer sees it."""

    exception: str
    errorcode: str | None
    message: str
    debuginfo: str | None = None
    http_status: int = 200

    def rest_object(self, debug: bool) -> dict[str, Any]:
        """The JSON object ``webservice/rest/server.php`` prints."""
        obj: dict[str, Any] = {"exception": self.exception}
        if self.errorcode is not None:
            obj["errorcode"] = self.errorcode
        obj["message"] = self.message
        if debug and self.debuginfo is not None:
            obj["debuginfo"] = self.debuginfo
        return obj

    def ajax_object(self, debug: bool, wwwroot: str) -> dict[str, Any]:
        """The JSON object the AJAX renderer prints for upload.php / pluginfile.php."""
        return {
            "error": self.message,
            "errorcode": self.errorcode or "",
            "stacktrace": ("* line 0 of /fakemoodle: " + self.exception + " thrown")
            if debug
            else None,
            "debuginfo": self.debuginfo if debug and self.debuginfo else None,
            "reproductionlink": wwwroot + "/" if debug else None,
        }

    def rest_xml(self, debug: bool) -> str:
        """The XML document the REST server prints when no JSON format was requested."""
        parts = [
            '<?xml version="1.0" encoding="UTF-8" ?>\n',
            f'<EXCEPTION class="{_xml(self.exception)}">\n',
        ]
        if self.errorcode is not None:
            parts.append(f"<ERRORCODE>{_xml(self.errorcode)}</ERRORCODE>\n")
        parts.append(f"<MESSAGE>{_xml(self.message)}</MESSAGE>\n")
        if debug and self.debuginfo is not None:
            parts.append(f"<DEBUGINFO>{_xml(self.debuginfo)}</DEBUGINFO>\n")
        parts.append("</EXCEPTION>\n")
        return "".join(parts)


def _xml(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def invalid_parameter(debuginfo: str) -> MoodleError:
    """``new invalid_parameter_exception($debuginfo)``."""
    return MoodleError(
        "core\\exception\\invalid_parameter_exception",
        "invalidparameter",
        "Invalid parameter value detected",
        debuginfo,
    )


def invalid_token() -> MoodleError:
    """``new moodle_exception('invalidtoken', 'webservice')``: unknown (or deleted) token."""
    return MoodleError(
        "core\\exception\\moodle_exception", "invalidtoken", "Invalid token - token not found"
    )


def access_exception(debuginfo: str) -> MoodleError:
    """``new webservice_access_exception($debuginfo)``."""
    return MoodleError(
        "webservice_access_exception", "accessexception", "Access control exception", debuginfo
    )


def token_expired() -> MoodleError:
    return access_exception("Invalid token - token expired - check validuntil time for the token")


def function_not_allowed(name: str) -> MoodleError:
    return access_exception(ACCESS_DENIED_FUNCTION_DEBUGINFO.format(name=name))


def unknown_function(name: str) -> MoodleError:
    """What ``external_api::external_function_info()`` throws for an unknown wsfunction."""
    return MoodleError(
        "dml_missing_record_exception",
        "invalidrecord",
        "Can't find data record in database table external_functions.",
        # Moodle's debuginfo of the failed lookup (text only, nothing is queried).
        "SELECT * FROM {external_functions} WHERE name = ?\n"  # noqa: S608
        f"[array (\n  0 => '{name}',\n)]",
    )


def missing_param(name: str) -> MoodleError:
    """``required_param()`` of a missing parameter."""
    return MoodleError(
        "core\\exception\\moodle_exception",
        "missingparam",
        f"A required parameter ({name}) was missing",
    )


def file_not_found() -> MoodleError:
    """``send_file_not_found()``: HTTP 404 plus the error object."""
    return MoodleError(
        "core\\exception\\moodle_exception",
        "filenotfound",
        "Sorry, the requested file could not be found",
        http_status=404,
    )


def upload_ini_size() -> MoodleError:
    """PHP's ``UPLOAD_ERR_INI_SIZE`` (file larger than ``upload_max_filesize``)."""
    return MoodleError(
        "core\\exception\\moodle_exception",
        "upload_error_ini_size",
        "The uploaded file exceeds the upload_max_filesize directive in php.ini.",
    )


def php_type_error(message: str) -> MoodleError:
    """An uncaught PHP ``TypeError`` inside a web service function."""
    return MoodleError("TypeError", None, message)


def stored_file_not_created(filename: str) -> MoodleError:
    """``create_file_from_pathname()`` of a name the draft area already has."""
    return MoodleError(
        "stored_file_creation_exception",
        "storedfilenotcreated",
        "Cannot create file",
        f"Can not create file \"{filename}\" (file exists)",
    )
