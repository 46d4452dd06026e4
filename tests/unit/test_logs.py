from __future__ import annotations

import io
import json
import logging

from moodle_archive_job.logs import JsonFormatter, TextFormatter, redact, register_secret


def _emit(formatter: logging.Formatter, msg: str, *args: object, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(msg, *args, extra={"fields": fields})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_registered_secret_is_redacted_everywhere() -> None:
    secret = "5ecre7t0ken5ecre7t0ken5ecre7t0k"
    register_secret(secret)
    line = _emit(JsonFormatter(), "calling with %s", secret, url=f"http://x/?a={secret}")
    assert secret not in line
    entry = json.loads(line)
    assert entry["message"] == "calling with ***"
    assert _emit(TextFormatter(), "t=%s", secret).count("***") == 1


def test_token_query_parameters_are_masked_even_unregistered() -> None:
    text = redact("GET /pluginfile.php/1/x?token=abcdef0123&forcedownload=1 wstoken=zz99")
    assert "abcdef0123" not in text and "zz99" not in text
    assert "token=***&forcedownload=1" in text


def test_unregistered_secret_is_forgotten() -> None:
    from moodle_archive_job import logs

    secret = "f0rg3tm3f0rg3tm3"
    register_secret(secret)
    assert secret in logs._secrets
    logs.unregister_secret(secret)
    assert secret not in logs._secrets
    assert redact(secret) == secret
