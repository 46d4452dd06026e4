"""A strict fake Moodle for tests, benchmarks and the demo.

It plays the plugin side of both worker protocols exactly as the protocol spec
(``/work/shared/spec/moodle-worker-protocol.md``) describes: quiz_archiver (API v7) and the
local_archiving driver archivingmod_quiz (API v1). It is strict where Moodle is strict, so a
worker that passes against it should pass against a real Moodle.

Quick start::

    from tests.fakemoodle import FakeMoodle, FaultConfig

    with FakeMoodle(report_latency=0.0, mathjax_version=3, max_upload_bytes=None,
                    faults=None) as moodle:
        moodle.base_url           # "http://127.0.0.1:PORT" (public wwwroot unless public_url=)
        quiz = moodle.create_quiz(attempts=3, name="Reference Quiz", course_shortname="QA",
                                  with_formulas=True, attachments_per_attempt=0, users=None)
        job = moodle.create_job(quiz, protocol="quiz_archiver",   # or "archivingmod_quiz"
                                paper_format="A4", keep_html_files=False, backups=("quiz",),
                                backup_ready_after=0.0, backup_fails=False, image_optimize=None,
                                sections=None, foldername_pattern=None, filename_pattern=None,
                                archive_filename_pattern=None, timeout_min=60, attempts_subset=None)
        job.request_body                # the exact JSON body the plugin POSTs to the worker
        job.token                       # the job's 32-hex web service token
        job.endpoint_path               # "/archive" or "/archive/archivingmod_quiz"
        moodle.register_job(job, jobid) # Moodle inserted the row after the worker's 200 {"jobid"}
        # ... or let the fake play the plugin's HTTP call and register on success:
        moodle.submit_job(job, "http://127.0.0.1:8080")         # -> SubmitResult
        moodle.job(jobid).status        # raw DB status ("RUNNING"; 100 for archivingmod_quiz)
        moodle.job(jobid).status_name   # always the name ("RUNNING")
        moodle.job(jobid).statusextras_history   # [(status, extras), ...] every update in order
        moodle.job(jobid).artifact      # bytes of the stored archive, or None
        moodle.job(jobid).token_valid   # False once Moodle deleted (final status) or expired it
        moodle.job(jobid).attachment_counts      # {attemptid: n} stored by the report call
        moodle.calls                    # list[CallRecord] of every request, tokens redacted
        moodle.calls_for(jobid)         # the requests of one job, in order
        moodle.faults                   # FaultConfig, mutable at runtime

Main API (all on :class:`FakeMoodle`)
-------------------------------------
``FakeMoodle(report_latency=0.0, mathjax_version=3, max_upload_bytes=None, faults=None, *,
public_url=None, host="127.0.0.1", port=0, debug=True, data_dir=None, mathjax_root=None,
metadata_max_ids=100, report_trailer="</body></html>", plugin_release="4.1.0")``

* ``plugin_release``: ``"4.1.0"`` (the released plugins: requests without an upload limit,
  ``process_uploaded_artifact`` rejects ``artifact_count`` as an unexpected key) or ``"next"``
  (chunked uploads: requests carry ``moodle_max_upload_bytes`` / ``moodle_api.max_upload_bytes``
  = ``max_upload_bytes`` or the smaller PHP limit, the artifact call requires ``artifact_count``,
  reassembles ``<name>.chunk<9 digits>.bin`` in index order, deletes the chunks, then checks
  the SHA-256; ``E_CHUNK_REASSEMBLY_FAILED`` for a missing chunk, ``E_INVALID_ARTIFACT_COUNT``
  below 1).

* ``public_url``: the site's public ``$CFG->wwwroot`` (report ``<base href>``, page resources,
  attachment download URLs); ``base_url`` stays the plugin's ``internal_wwwroot`` (request body,
  ws/upload URLs, backup URLs), as on a real site with ``internal_wwwroot`` set.
* ``debug``: error objects carry ``debuginfo`` (Moodle with debugging on, like the samples).
* ``mathjax_version``: 2, 3 (default), 4 or ``None`` (no MathJax); a quiz can override it with
  ``create_quiz(..., mathjax_version=N)``. MathJax is served from npm packages installed by
  ``make setup`` under ``$MOODLE_ARCHIVER_CACHE_DIR/npm/node_modules`` at
  ``/lib/mathjax2/MathJax.js``, ``/lib/mathjax3/es5/tex-mml-chtml.js``,
  ``/lib/mathjax4/tex-mml-chtml.js`` (fonts under ``/lib/mathjax4-fonts/``).
* ``metadata_max_ids``: refuse metadata calls with more attempt ids than this (``None`` = no
  limit; real Moodle has none, but long GET URLs fail there); GET request lines longer than 8190
  bytes get HTTP 414 like Apache.

``create_quiz(attempts, name, course_shortname, with_formulas, attachments_per_attempt, users,
*, course_fullname=None, mathjax_version=None, preview_attempts=0, login_redirect=False)``
returns a :class:`Quiz` (``courseid``, ``cmid``, ``quizid``, ``attemptids``, ``attempts`` with
``answer_word`` and ``attachments``, ``users``). Each attempt's page shows the student's full
name, the attempt id and the unique ``answer_word``.

``create_job(quiz, protocol, ..., *, backup_bytes=16384, auto_register_after=None)`` creates
the token (``validuntil`` = now + ``timeout_min``), starts backups (``("quiz", "course")``; they
become ready ``backup_ready_after`` seconds later, or fail: ``E_BACKUP_FAILED``) and builds the
body. Until ``register_job`` no quiz_archiver job row exists (``E_UPDATE_FAILED`` /
``E_JOB_NOT_FOUND``); archivingmod_quiz task rows exist from the start (status CREATED, 20)
and ``register_job`` sets AWAITING_PROCESSING (40). ``auto_register_after=s`` registers the job
``s`` seconds after the first web service call that carries its token and a job id (the race
of section 4.6).

Moodle-side actions: ``advance_time(seconds)``, ``expire_job(job)`` (past its timeout: token
expired, report calls refused), ``open_archiver_page(quiz)`` (lazy TIMEOUT of overdue jobs),
``delete_job(job)``; ``report_html(attemptid, sections=None)``; ``mathjax_available(version)``.

Records: ``calls``, ``calls_for(jobid)``, ``ws_calls(wsfunction=None)``, ``login_requests``,
``clear_calls()``. A :class:`CallRecord` has ``time``, ``endpoint`` (rest, upload, pluginfile,
mathjax, static, login, other), ``method``, ``path``, ``wsfunction``, ``params`` (tokens
redacted as ``<redacted:HASH>``), ``token_hash``, ``token_valid``, ``http_status``,
``response_status`` (``status`` field or ``errorcode``), ``errorcode``, ``jobid``, ``taskid``,
``fault``, ``duration``, ``notes``.

Faults (:class:`FaultConfig`, also ``FakeMoodle(faults=...)``)
---------------------------------------------------------------
``set_latency(target, seconds)`` / ``latency[target]`` / ``report_latency``;
``fail_next(target, n=1, status=500)``; ``lose_answer_next(target, n=1, status=504)`` (processed,
then an error page instead of the answer); ``down("refuse" | "hang")`` / ``up()``;
``attachment_bad_hash``; ``attachment_oversize_bytes``; ``max_upload_bytes`` (per-file
``fileoversized``); ``upload_max_filesize`` (PHP ini error); ``post_max_size`` (PHP drops the
POST: ``missingparam``); ``mathjax`` = ``"never_ready"`` | ``"hang"`` | ``"missing"``;
``login_redirect``; ``clear()``. Targets: a wsfunction name, ``"report"``, ``"rest"``,
``"upload"``, ``"pluginfile:backup"``, ``"pluginfile:attachment"``, ``"pluginfile"``,
``"mathjax"``, ``"static"``, ``"login"``, ``"*"``. Backup failure and job timeout are job
options (``backup_fails``, ``timeout_min``, ``expire_job``).

Strictness (what Moodle checks and the fake checks too)
-------------------------------------------------------
REST: ``wstoken`` must be a live token (``invalidtoken``; expired: ``accessexception``),
``wsfunction`` must exist (``invalidrecord``) and belong to the token's service
(``accessexception``), ``moodlewsrestformat=json`` (else the answer is XML). Parameters are
validated like ``external_api::validate_parameters``: missing keys, unexpected keys, arrays
vs scalars, ``PARAM_INT`` (canonical integer strings), ``PARAM_BOOL`` (only ``1``/``0``),
``PARAM_TEXT`` (no tags) -> ``invalidparameter`` with Moodle's debuginfo. A JSON request body
is ignored (PHP does not decode it). Function bodies follow the plugins' order of checks and
status codes; a job's token only works for its own job; final statuses delete the token and
the job's backup files; the report answer ends with a literal ``</body></html>``; JSON is
encoded like PHP (``\\/``, ``\\uXXXX``). Files: upload.php and pluginfile.php use ``token``,
answer with the AJAX error object, upload replies carry ``userid`` as a string, backups are
``application/vnd.moodle.backup`` with Content-Length and answer HEAD.

Run standalone: ``python -m tests.fakemoodle --port 8085 --quiz-attempts 5``.
"""

from .faults import FaultConfig
from .plugin import SubmitResult
from .records import CallRecord
from .server import FakeMoodle
from .state import Attempt, Backup, Job, Quiz, User

__all__ = [
    "Attempt",
    "Backup",
    "CallRecord",
    "FakeMoodle",
    "FaultConfig",
    "Job",
    "Quiz",
    "SubmitResult",
    "User",
]
