# ruff: noqa: E501 - HTML markup reads better unwrapped.
"""The attempt review page the plugins hand to the worker (``report`` of generate_attempt_report).

Modelled on a real Moodle 5.0 page (``/work/shared/samples/moodle-5.0-attempt-report.html``):
``<base href=wwwroot>``, body class ``quiz-archiver-report``, a summary table, several question
types (multichoice, true/false, short answer, numerical, essay, multiple answers) with
feedback and response history, images inlined as ``data:`` URIs, formulas inside
``<span class="filter_mathjaxloader_equation">`` typeset by MathJax served from the fake
Moodle itself (``/lib/mathjax{2,3,4}/...``), and links to a theme stylesheet on the public
wwwroot. Every attempt carries its student's name, its id and a unique answer word, so a test
can find them in the PDF text.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .images import data_uri, flag_svg_uri, png
from .state import Attempt, Course, Quiz, Site, User

THEME_REV = "1795832315"

MathJaxFault = str | None
"""``None`` | ``"never_ready"`` (startup promise / Hub queue never finishes) | ``"hang"``
(the script request never gets an answer) | ``"missing"`` (404)."""


@dataclass
class ReportOptions:
    wwwroot: str
    mathjax_version: int | None = 3
    mathjax_fault: MathJaxFault = None
    login_redirect: bool = False
    archived: float | None = None


PRINT_STYLE = """
                nav.navbar, footer, #page-footer, .drawer-toggles { display: none !important; }
                div#page { margin-top: 0 !important; padding: 0 !important; height: auto !important; }
                div#page-wrapper { height: auto !important; }
                .stackinputerror { display: none !important; }
                pre[class*='language-'] { overflow: visible !important; white-space: pre-wrap !important; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _date(ts: float) -> str:
    return time.strftime("%A, %d %B %Y, %I:%M %p", time.localtime(ts)).replace(" 0", " ")


def _short(ts: float) -> str:
    return time.strftime("%d/%m/%y, %H:%M:%S", time.localtime(ts))


def mathjax_script_url(wwwroot: str, version: int) -> str:
    if version == 2:
        return f"{wwwroot}/lib/mathjax2/MathJax.js?config=TeX-AMS-MML_HTMLorMML"
    if version == 3:
        return f"{wwwroot}/lib/mathjax3/es5/tex-mml-chtml.js"
    if version == 4:
        return f"{wwwroot}/lib/mathjax4/tex-mml-chtml.js"
    raise ValueError(f"unsupported MathJax version {version}")


def mathjax_loader(options: ReportOptions) -> str:
    """The MathJax configuration + loader snippet (what filter_mathjaxloader adds to a page)."""
    version = options.mathjax_version
    if not version:
        return ""
    url = mathjax_script_url(options.wwwroot, version)
    if version == 2:
        stall = (
            "MathJax.Hub.Queue(function () { return MathJax.Callback(function () {}); });"
            if options.mathjax_fault == "never_ready"
            else ""
        )
        return (
            '<script type="text/x-mathjax-config">\n'
            "MathJax.Hub.Config({skipStartupTypeset: true, messageStyle: 'none', "
            "tex2jax: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']]}});\n"
            # Queued while MathJax reads its configuration, i.e. before anything a readiness
            # probe can queue: the probe's callback runs after typesetting (or never).
            f"{stall}\n"
            "MathJax.Hub.Queue(['Typeset', MathJax.Hub, Array.prototype.slice.call(\n"
            "  document.getElementsByClassName('filter_mathjaxloader_equation'))]);\n"
            "</script>\n"
            f'<script src="{_e(url)}"></script>\n'
        )
    ready = (
        "return new Promise(function () {});"
        if options.mathjax_fault == "never_ready"
        else (
            "return MathJax.startup.defaultPageReady().then(function () {\n"
            "        var nodes = document.getElementsByClassName('filter_mathjaxloader_equation');\n"
            "        return MathJax.typesetPromise(Array.prototype.slice.call(nodes));\n"
            "      });"
        )
    )
    opts = "ignoreHtmlClass: 'tex2jax_ignore', enableMenu: false"
    extra = ""
    if version == 4:
        # Fonts and speech data would come from a CDN by default; keep everything on this origin.
        opts += ", enableEnrichment: false, enableSpeech: false, enableBraille: false, enableExplorer: false"
        extra = f"  loader: {{paths: {{fonts: '{options.wwwroot}/lib/mathjax4-fonts'}}}},\n"
    return (
        "<script>\n"
        "window.MathJax = {\n"
        "  tex: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']]},\n"
        f"  options: {{{opts}}},\n"
        f"{extra}"
        "  startup: {typeset: false, pageReady: function () {\n"
        f"      {ready}\n"
        "  }}\n"
        "};\n"
        "(function () { var s = document.createElement('script');\n"
        f"  s.src = '{url}'; s.async = true; document.head.appendChild(s); }})();\n"
        "</script>\n"
    )


def login_redirect_script(wwwroot: str) -> str:
    """Moodle's AJAX failure handler: a failed call redirects the window to the login page."""
    return f'<script src="{_e(wwwroot)}/lib/javascript.php/{THEME_REV}/lib/fakemoodle/ajax.js"></script>\n'


def _flag() -> str:
    return (
        f'<div class="questionflag"><img src="{flag_svg_uri()}" alt="" class="questionflagimage">'
        "<span>Flag question</span></div>"
    )


def _info(slot: int, state: str, mark: float, maxmark: float, sections: Mapping[str, bool]) -> str:
    parts = [f'<div class="info"><h3 class="no">Question <span class="qno">{slot}</span></h3>']
    if sections.get("question_correctness", True):
        parts.append(f'<div class="state">{_e(state)}</div>')
    if sections.get("question_marks", True):
        if state == "Complete":
            parts.append(f'<div class="grade">Marked out of {maxmark:.2f}</div>')
        else:
            parts.append(f'<div class="grade">Mark {mark:.2f} out of {maxmark:.2f}</div>')
    parts.append(_flag())
    parts.append("</div>")
    return "".join(parts)


def _icon(correct: bool, sections: Mapping[str, bool]) -> str:
    if not sections.get("question_correctness", True):
        return ""
    if correct:
        return '<i class="icon fa-regular fa-circle-check text-success fa-fw" title="Correct" role="img" aria-label="Correct"></i>'
    return '<i class="icon fa-regular fa-circle-xmark text-danger fa-fw" title="Incorrect" role="img" aria-label="Incorrect"></i>'


def _outcome(specific: str, general: str, right: str, sections: Mapping[str, bool]) -> str:
    parts = []
    if sections.get("question_feedback"):
        parts.append(f'<div class="specificfeedback clearfix">{specific}</div>')
    if sections.get("general_feedback"):
        parts.append(f'<div class="generalfeedback"><div class="clearfix">{general}</div></div>')
    if sections.get("rightanswer"):
        parts.append(f'<div class="rightanswer">{right}</div>')
    if not parts:
        return ""
    return (
        '<div class="outcome clearfix"><h4 class="accesshide">Feedback</h4><div class="feedback">'
        + "".join(parts)
        + "</div></div>"
    )


def _history(
    attempt: Attempt,
    slot: int,
    saved: str,
    final_state: str,
    mark: str,
    sections: Mapping[str, bool],
    wwwroot: str,
) -> str:
    if not sections.get("history"):
        return ""
    rows = [
        (1, attempt.timestart, "Started", "Not yet answered", ""),
        (2, attempt.timestart + 60 * slot, f"Saved: {saved}", "Answer saved", ""),
        (3, attempt.timefinish, "Attempt finished", final_state, mark),
    ]
    body = []
    for step, ts, action, state, marks in rows:
        link = (
            f'<a href="{_e(wwwroot)}/mod/quiz/reviewquestion.php?attempt={attempt.id}&amp;slot={slot}&amp;step={step - 1}" '
            f'title="Review response">{step}</a>'
            if step < 3
            else str(step)
        )
        body.append(
            f'<tr><td class="cell c0">{link}</td><td class="cell c1">{_short(ts)}</td>'
            f'<td class="cell c2">{_e(action)}</td><td class="cell c3">{_e(state)}</td>'
            f'<td class="cell c4 lastcol">{_e(marks)}</td></tr>'
        )
    return (
        '<div class="history clearfix border p-2"><h4 class="responsehistoryheader">Response history</h4>'
        '<div class="responsehistoryheader"><div class="table-responsive"><table class="generaltable table table-hover">'
        '<thead><tr><th class="header c0" scope="col">Step</th><th class="header c1" scope="col">Time</th>'
        '<th class="header c2" scope="col">Action</th><th class="header c3" scope="col">State</th>'
        '<th class="header c4 lastcol" scope="col">Marks</th></tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table></div></div></div>"
    )


def _question(
    attempt: Attempt,
    slot: int,
    qtype: str,
    state_class: str,
    info: str,
    formulation: str,
    outcome: str,
    history: str,
) -> str:
    return (
        f'<div id="question-{attempt.uniqueid}-{slot}" class="que {qtype} deferredfeedback {state_class}">'
        f'{info}<div class="content"><div class="formulation clearfix"><h4 class="accesshide">Question text</h4>'
        f"{formulation}</div>{outcome}{history}</div></div>"
    )


def _eq(text: str, formulas: bool) -> str:
    if not formulas:
        return text
    return f'<span class="filter_mathjaxloader_equation">{text}</span>'


def _questions(
    quiz: Quiz, attempt: Attempt, user: User, sections: Mapping[str, bool], wwwroot: str
) -> tuple[str, float]:
    """All question blocks and the total mark."""
    formulas = quiz.with_formulas
    out: list[str] = []
    total = 0.0
    key = attempt.id

    # 1: multichoice, single answer.
    options = ["One", "Two", "Three", "Four"]
    chosen = key % 4
    correct = chosen == 0
    total += 1.0 if correct else 0.0
    answers = "".join(
        f'<div class="r{i % 2}{" correct" if i == chosen and correct else ""}">'
        f'<input type="radio" disabled value="{i}"{" checked" if i == chosen else ""}>'
        f'<div class="d-flex w-auto"><span class="answernumber">{i + 1}. </span><div class="flex-fill ms-1">{text}</div></div>'
        f"{_icon(correct, sections) if i == chosen else ''}</div>"
        for i, text in enumerate(options)
    )
    out.append(
        _question(
            attempt,
            1,
            "multichoice",
            "correct" if correct else "incorrect",
            _info(1, "Correct" if correct else "Incorrect", 1.0 if correct else 0.0, 1.0, sections),
            '<div class="qtext"><div class="clearfix">Which is the oddest number?</div></div>'
            f'<fieldset class="ablock"><div class="answer">{answers}</div></fieldset>',
            _outcome(
                "Well done!" if correct else "That is not right.",
                "The oddest number is One.",
                "The correct answer is: One",
                sections,
            ),
            _history(
                attempt,
                1,
                options[chosen],
                "Correct" if correct else "Incorrect",
                "1.00" if correct else "0.00",
                sections,
                wwwroot,
            ),
        )
    )

    # 2: true/false.
    said_true = key % 3 != 0
    total += 1.0 if said_true else 0.0
    tf = (
        f'<div class="r0"><input type="radio" value="1" disabled{" checked" if said_true else ""}><label class="ms-1">True</label> '
        f"{_icon(True, sections) if said_true else ''}</div>"
        f'<div class="r1"><input type="radio" value="0" disabled{"" if said_true else " checked"}><label class="ms-1">False</label> '
        f"{'' if said_true else _icon(False, sections)}</div>"
    )
    out.append(
        _question(
            attempt,
            2,
            "truefalse",
            "correct" if said_true else "incorrect",
            _info(
                2, "Correct" if said_true else "Incorrect", 1.0 if said_true else 0.0, 1.0, sections
            ),
            f'<div class="qtext"><div class="clearfix">The answer is true.</div></div><fieldset class="ablock"><div class="answer">{tf}</div></fieldset>',
            _outcome(
                "This is the right answer." if said_true else "This is the wrong answer.",
                "You should have selected true.",
                "The correct answer is 'True'.",
                sections,
            ),
            _history(
                attempt,
                2,
                "True" if said_true else "False",
                "Correct" if said_true else "Incorrect",
                "1.00" if said_true else "0.00",
                sections,
                wwwroot,
            ),
        )
    )

    # 3: short answer with the attempt's unique word.
    word = attempt.answer_word
    total += 0.5
    out.append(
        _question(
            attempt,
            3,
            "shortanswer",
            "partiallycorrect",
            _info(3, "Partially correct", 0.5, 1.0, sections),
            '<div class="qtext"><div class="clearfix">Name an animal that lives in Australia: '
            f'<input type="text" value="{_e(word)}" size="30" class="form-control d-inline" readonly> '
            f'<span class="answer-echo">{_e(word)}</span></div></div>',
            _outcome(
                f"{_e(word)} is an unusual answer.",
                "Kangaroo, koala or quokka would have been fine.",
                "The correct answer is: quokka",
                sections,
            ),
            _history(attempt, 3, word, "Partially correct", "0.50", sections, wwwroot),
        )
    )

    # 4: numerical with an inline formula.
    value = 12 if key % 2 else 11
    ok = value == 12
    total += 1.0 if ok else 0.0
    out.append(
        _question(
            attempt,
            4,
            "numerical",
            "correct" if ok else "incorrect",
            _info(4, "Correct" if ok else "Incorrect", 1.0 if ok else 0.0, 1.0, sections),
            '<div class="qtext"><div class="clearfix">'
            + _eq('<p>Compute <span class="nolink">\\(\\sqrt{16} + 2^3\\)</span>.</p>', formulas)
            + f'</div></div><div class="ablock"><label>Answer: <input type="text" value="{value}" readonly '
            f'class="form-control d-inline"></label>{_icon(ok, sections)}</div>',
            _outcome(
                "Correct." if ok else "Not quite.",
                "Four plus eight is twelve.",
                "The correct answer is: 12",
                sections,
            ),
            _history(
                attempt,
                4,
                str(value),
                "Correct" if ok else "Incorrect",
                "1.00" if ok else "0.00",
                sections,
                wwwroot,
            ),
        )
    )

    # 5: essay with formulas, an inlined image and the attachments.
    figure = data_uri("image/png", png(320, 120, f"Figure for attempt {attempt.id}"))
    essay_text = (
        f"<p>Essay answer of {_e(user.fullname)} for attempt {attempt.id}. Once upon a time a "
        f'{_e(word)} met a frog. Energy: <span class="nolink">\\(E = mc^2\\)</span>.</p>'
        '<p>The display formula <span class="nolink">$$x^2 + \\frac{a}{b} = \\sqrt{\\alpha_1^2 + \\beta}$$</span> '
        "closes the story.</p>"
    )
    links = "".join(
        f'<p><a href="{_e(wwwroot)}/pluginfile.php/{a.contextid}/question/response_attachments/{a.usageid}/{a.slot}/{a.itemid}/{_e(a.filename)}?forcedownload=1">'
        f"{_e(a.filename)}</a></p>"
        for a in attempt.attachments
    )
    out.append(
        _question(
            attempt,
            5,
            "essay manualgraded",
            "complete",
            _info(5, "Complete", 0.0, 1.0, sections),
            '<div class="qtext"><div class="clearfix">'
            + _eq(
                '<p>Write a story about an animal and use <span class="nolink">\\(E = mc^2\\)</span>.</p>',
                formulas,
            )
            + f'<p><img src="{figure}" alt="Figure" width="320" height="120" class="img-fluid"></p></div></div>'
            '<div class="ablock"><div class="answer"><div class="qtype_essay_editor qtype_essay_response readonly">'
            + _eq(essay_text, formulas)
            + f'</div></div><div class="attachments">{links}</div></div>',
            _outcome("", "A good story has a beginning, a middle and an end.", "", sections),
            _history(attempt, 5, "Essay", "Complete", "", sections, wwwroot),
        )
    )

    # 6: multichoice, multiple answers.
    picks = {1, 3} if key % 2 else {1, 2}
    good = picks == {1, 3}
    total += 1.0 if good else 0.0
    choices = ["Four", "One", "Two", "Three"]
    multi = "".join(
        f'<div class="r{i % 2}"><input type="checkbox" disabled{" checked" if i in picks else ""}>'
        f'<div class="d-flex w-auto"><span class="answernumber">{chr(97 + i)}. </span><div class="flex-fill ms-1">{text}</div></div></div>'
        for i, text in enumerate(choices)
    )
    out.append(
        _question(
            attempt,
            6,
            "multichoice",
            "correct" if good else "partiallycorrect",
            _info(
                6, "Correct" if good else "Partially correct", 1.0 if good else 0.5, 1.0, sections
            ),
            f'<div class="qtext"><div class="clearfix">Which are the odd numbers?</div></div><fieldset class="ablock"><div class="answer">{multi}</div></fieldset>',
            _outcome(
                "Both odd numbers found." if good else "One of your choices is even.",
                "The odd numbers are One and Three.",
                "The correct answers are: One, Three",
                sections,
            ),
            _history(
                attempt,
                6,
                ", ".join(choices[i] for i in sorted(picks)),
                "Correct" if good else "Partially correct",
                "1.00" if good else "0.50",
                sections,
                wwwroot,
            ),
        )
    )
    return "".join(out), total


def _summary(
    quiz: Quiz,
    course: Course,
    attempt: Attempt,
    user: User,
    sections: Mapping[str, bool],
    total: float,
    archived: float,
    wwwroot: str,
) -> str:
    picture = data_uri("image/png", png(35, 35, "", (120, 80, 160)))
    rows = [
        (
            "User",
            f'<a href="{_e(wwwroot)}/user/view.php?id={user.id}&amp;course={course.id}"><img src="{picture}" class="userpicture" width="35" height="35" alt=""></a> '
            f'<a href="{_e(wwwroot)}/user/view.php?id={user.id}&amp;course={course.id}">{_e(user.fullname)}</a>',
        ),
        ("ID number", _e(user.idnumber) if user.idnumber else "<i>None</i>"),
        ("Course", f"{_e(course.fullname)} (Course-ID: {course.id})"),
        ("Quiz", f"{_e(quiz.name)} (Quiz-ID: {quiz.quizid})"),
        ("Started", _date(attempt.timestart)),
        ("Status", "Finished"),
        ("Completed", _date(attempt.timefinish)),
        ("Duration", f"{max(1, (attempt.timefinish - attempt.timestart) // 60)} mins"),
    ]
    if sections.get("quiz_grade"):
        rows.append(
            (
                "Grade",
                f"<b>{total / 6 * 10:.2f}</b> out of 10.00 (<b>{round(total / 6 * 100)}</b>%)",
            )
        )
        rows.append(("Marks", f"{total:.2f}/6.00"))
    if sections.get("quiz_feedback"):
        rows.append(("Feedback", "Thank you for taking the quiz."))
    rows.append(("Archived", _date(archived)))
    body = "".join(
        f'<tr><th class="cell" scope="row">{label}</th><td class="cell">{value}</td></tr>\n'
        for label, value in rows
    )
    return (
        '<div class="mb-3"><table class="generaltable generalbox quizreviewsummary mb-0"><tbody>\n'
        + body
        + "</tbody></table></div>"
    )


def render_report(
    quiz: Quiz,
    course: Course,
    attempt: Attempt,
    user: User,
    sections: Mapping[str, bool],
    options: ReportOptions,
) -> str:
    """The full HTML document for one attempt."""
    www = options.wwwroot
    archived = options.archived if options.archived is not None else time.time()
    questions, total = _questions(quiz, attempt, user, sections, www)
    parts = [
        '<!DOCTYPE html>\n<html dir="ltr" lang="en" xml:lang="en">\n<head>\n',
        f"    <title>{_e(quiz.name)}: Attempt review</title>\n",
        f'    <link rel="shortcut icon" href="{_e(www)}/theme/image.php/boost/theme/{THEME_REV}/favicon">\n',
        '    <meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n',
        f'<link rel="stylesheet" type="text/css" href="{_e(www)}/theme/styles.php/boost/{THEME_REV}_1/all">\n',
        "<script>\nvar M = {}; M.yui = {};\nM.pageloadstarttime = new Date();\n",
        f'M.cfg = {{"wwwroot":"{www}","sesskey":"fakesesskey","themerev":"{THEME_REV}","theme":"boost",'
        f'"courseId":{course.id},"contextid":{quiz.contextid},"userId":{Site.SERVICE_USER_ID},"developerdebug":true}};\n',
        "</script>\n",
        '    <meta name="viewport" content="width=device-width, initial-scale=1.0">\n',
        f'<base href="{_e(www)}"><style>{PRINT_STYLE}            </style></head>\n',
        '<body id="page-webservice-rest-server" class="quiz-archiver-report format-site path-webservice '
        'path-webservice-rest dir-ltr lang-en pagelayout-base course-1 context-1 theme">\n',
        '<div id="page-wrapper" class="d-print-block">\n',
        '<nav class="navbar fixed-top navbar-light bg-white navbar-expand" aria-label="Site navigation">'
        '<a class="navbar-brand" href="' + _e(www) + '/">Fake Moodle</a></nav>\n',
        '<div id="page" class="drawers">\n<div id="page-content" class="pb-3 d-print-block">\n'
        '<div id="region-main-box"><div id="region-main">\n'
        '<span class="notifications" id="user-notifications"></span>\n<div role="main"><span id="maincontent"></span>',
    ]
    if sections.get("header", True):
        parts.append(_summary(quiz, course, attempt, user, sections, total, archived, www))
    if sections.get("question", True):
        parts.append(questions)
    parts.append("</div>\n</div></div>\n</div>\n</div>\n")
    parts.append(
        '<footer id="page-footer" class="footer-popover bg-white"><div class="logininfo">You are logged in as '
        f'<a href="{_e(www)}/user/profile.php?id={Site.SERVICE_USER_ID}">Quiz Archiver Service Account</a></div></footer>\n'
    )
    parts.append("</div>\n")
    if quiz.login_redirect or options.login_redirect:
        parts.append(login_redirect_script(www))
    parts.append(mathjax_loader(options))
    parts.append("</body></html>\n")
    return "".join(parts)
