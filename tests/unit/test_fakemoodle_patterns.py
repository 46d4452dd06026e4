"""The fake Moodle's PHP emulation, parameter validation and name patterns (no server)."""

from __future__ import annotations

import pytest

from tests.fakemoodle import patterns
from tests.fakemoodle.errors import MoodleError
from tests.fakemoodle.params import (
    PARAM_BOOL,
    PARAM_INT,
    PARAM_TEXT,
    Multiple,
    Single,
    Value,
    validate_parameters,
)
from tests.fakemoodle.php import json_encode, parse_str, preg_replace_all, truthy


def _data(**overrides: object) -> dict[str, object]:
    base = dict(
        courseid=9,
        coursename="Course",
        courseshortname="QA",
        cmid=23,
        quizid=12,
        quizname="Quiz",
        attemptid=42,
        username="jdoe",
        firstname="Jane",
        lastname="Doe",
        idnumber="",
        timestart=100,
        timefinish=200,
        now=1_767_268_800,  # 2026-01-01 12:00:00 UTC
    )
    base.update(overrides)
    return patterns.attempt_name_data(**base)  # type: ignore[arg-type]


# -- PHP emulation --------------------------------------------------------------------------------


def test_parse_str_builds_php_arrays() -> None:
    parsed = parse_str(
        [("a[]", "1"), ("a[]", "2"), ("s[header]", "1"), ("s[x]", "0"), ("k", "v1"), ("k", "v2")]
    )
    assert parsed == {"a": {0: "1", 1: "2"}, "s": {"header": "1", "x": "0"}, "k": "v2"}


def test_parse_str_mangles_names_like_php() -> None:
    assert parse_str([("a.b", "1"), ("c d", "2"), ("e[f", "3")]) == {
        "a_b": "1",
        "c_d": "2",
        "e_f": "3",
    }
    assert parse_str([("x[0]", "a"), ("x[]", "b")]) == {"x": {0: "a", 1: "b"}}


def test_json_encode_escapes_slashes_and_unicode_like_php() -> None:
    assert json_encode({"p": "a/b", "u": "Öberg"}) == '{"p":"a\\/b","u":"\\u00d6berg"}'


def test_truthy_follows_php() -> None:
    assert [truthy(v) for v in ("", "0", "00", "a", None, 0, [], {"a": 1})] == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_preg_replacement_backreferences_vanish() -> None:
    import re

    assert (
        preg_replace_all(re.compile(r"X"), "cost $1 or ${2} or \\3, all $0", "aXb")
        == "acost  or  or , all Xb"
    )


# -- parameter validation -------------------------------------------------------------------------

DESC = Single(
    {
        "id": Value(PARAM_INT),
        "flag": Value(PARAM_BOOL),
        "name": Value(PARAM_TEXT),
        "ids": Multiple(Value(PARAM_INT)),
        "opts": Single({"a": Value(PARAM_BOOL)}),
    }
)
GOOD = {"id": "5", "flag": "1", "name": "x", "ids": {0: "1", 1: "-2"}, "opts": {"a": "0"}}


def _debuginfo(params: dict[str, object]) -> str:
    with pytest.raises(MoodleError) as caught:
        validate_parameters(DESC, params)  # type: ignore[arg-type]
    assert caught.value.errorcode == "invalidparameter"
    assert caught.value.message == "Invalid parameter value detected"
    return str(caught.value.debuginfo)


def test_valid_parameters_are_converted() -> None:
    assert validate_parameters(DESC, GOOD) == {  # type: ignore[arg-type]
        "id": 5,
        "flag": True,
        "name": "x",
        "ids": [1, -2],
        "opts": {"a": False},
    }


def test_missing_key() -> None:
    params = dict(GOOD)
    del params["id"]
    assert _debuginfo(params) == "Missing required key in single structure: id"


def test_unexpected_key() -> None:
    assert (
        _debuginfo({**GOOD, "extra": "1"}) == "Unexpected keys (extra) detected in parameter array."
    )


@pytest.mark.parametrize("value", ["True", "true", "yes", "", "2"])
def test_bool_accepts_only_one_and_zero(value: str) -> None:
    assert _debuginfo({**GOOD, "flag": value}) == (
        "flag => Invalid parameter value detected: "
        f'Invalid external api parameter: the value is "{value}", '
        'the server was expecting "bool" type'
    )


@pytest.mark.parametrize("value", ["007", "1.0", "abc", " 5", "-0", "5x"])
def test_int_must_be_canonical(value: str) -> None:
    assert 'the server was expecting "int" type' in _debuginfo({**GOOD, "id": value})


def test_nested_errors_name_the_path() -> None:
    assert _debuginfo({**GOOD, "opts": {"a": "True"}}).startswith(
        "opts => Invalid parameter value detected: a => Invalid parameter value detected: "
    )
    assert _debuginfo({**GOOD, "opts": {}}) == (
        "opts => Invalid parameter value detected: Missing required key in single structure: a"
    )


def test_scalar_for_array_and_array_for_scalar() -> None:
    assert (
        _debuginfo({**GOOD, "ids": "5"})
        == "ids => Invalid parameter value detected: Only arrays accepted. The bad value is: '5'"
    )
    assert _debuginfo({**GOOD, "id": {0: "5"}}) == (
        "id => Invalid parameter value detected: Scalar type expected, array or object received."
    )


def test_text_rejects_tags() -> None:
    assert 'expecting "text"' in _debuginfo({**GOOD, "name": "<b>x</b>"})
    validate_parameters(DESC, {**GOOD, "name": "a < b"})  # type: ignore[arg-type]


# -- patterns --------------------------------------------------------------------------------------


def test_pattern_validation() -> None:
    assert patterns.is_valid_attempt_foldername_pattern(patterns.DEFAULT_FOLDERNAME_PATTERN)
    assert patterns.is_valid_attempt_filename_pattern(patterns.DEFAULT_FILENAME_PATTERN)
    assert patterns.is_valid_archive_filename_pattern(patterns.DEFAULT_ARCHIVE_FILENAME_PATTERN)
    assert patterns.is_valid_attempt_filename_pattern("a-${ username }-b")
    assert not patterns.is_valid_attempt_filename_pattern("a-${nosuchvar}")
    assert not patterns.is_valid_attempt_filename_pattern("a-$username")
    assert not patterns.is_valid_attempt_filename_pattern("a.b")
    assert not patterns.is_valid_attempt_filename_pattern("a/b")
    assert not patterns.is_valid_attempt_filename_pattern("")
    assert not patterns.is_valid_archive_filename_pattern(
        "x-${attemptid}"
    )  # not an archive variable
    assert patterns.is_valid_attempt_foldername_pattern("a/b")
    assert not patterns.is_valid_attempt_foldername_pattern("/a")
    assert not patterns.is_valid_attempt_foldername_pattern("a/")
    assert patterns.is_valid_attempt_foldername_pattern("/a/", "archivingmod_quiz")


def test_expansion_of_default_patterns() -> None:
    import time

    data = _data()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(1_767_268_800))
    assert (
        patterns.expand_attempt_name(patterns.DEFAULT_FOLDERNAME_PATTERN, data, folder=True)
        == f"jdoe/42-{stamp}"
    )
    assert (
        patterns.expand_attempt_name(patterns.DEFAULT_FILENAME_PATTERN, data, folder=False)
        == f"attempt-42-jdoe-{stamp}"
    )


def test_missing_values_become_null_or_zero() -> None:
    data = _data(idnumber="", timefinish=0)
    assert patterns.expand_attempt_name(
        "${idnumber}-${timefinish}-${groupnames}-${groupids}", data, folder=False
    ) == ("null-0-nogroup-0")
    groups = [{"id": 7, "idnumber": "", "name": "Red"}, {"id": 8, "idnumber": "G8", "name": "Blue"}]
    data = _data(groups=groups)
    assert patterns.expand_attempt_name(
        "${groupids}_${groupidnumbers}_${groupnames}", data, folder=False
    ) == ("7-8_null-G8_Red-Blue")


def test_sanitising_removes_forbidden_characters() -> None:
    data = _data(quizname='Quiz: "A/B"? *yes*!', username="j.doe;x<y>|z")
    assert (
        patterns.expand_attempt_name("${quizname}-${username}", data, folder=False)
        == "Quiz AB yes-jdoexyz"
    )
    assert (
        patterns.expand_attempt_name("${quizname}/${username}", data, folder=True)
        == "Quiz A/B yes/jdoexyz"
    )


def test_folder_trimming_and_segment_length() -> None:
    assert patterns.sanitize_foldername("  /a/ b /c/  ") == "a/ b /c"
    long = "x" * 300
    assert patterns.sanitize_foldername(f"{long}/{long}") == f"{'x' * 240}/{'x' * 240}"
    assert patterns.sanitize_foldername("a//b/0/c", "archivingmod_quiz") == "a/b/c"
    assert patterns.sanitize_filename("  " + "y" * 300 + "  ") == "y" * 240


def test_variable_values_are_cut_to_128_bytes() -> None:
    data = _data(quizname="q" * 200, lastname="ä" * 100)  # 200 bytes of umlauts
    assert patterns.expand_attempt_name("${quizname}", data, folder=False) == "q" * 128
    assert patterns.expand_attempt_name("${lastname}", data, folder=False) == "ä" * 64


def test_dollar_digits_in_values_are_php_backreferences() -> None:
    data = _data(quizname="Price $1 total")
    assert patterns.expand_attempt_name("${quizname}", data, folder=False) == "Price  total"


def test_archivingmod_quiz_swaps_the_sanitisers() -> None:
    data = _data()
    name = patterns.expand_attempt_name(
        "${username}/${attemptid}", data, folder=True, flavour="archivingmod_quiz"
    )
    assert name == "jdoe42"
    data = _data(quizname="A/B")
    assert (
        patterns.expand_attempt_name("${quizname}", data, folder=False, flavour="archivingmod_quiz")
        == "A/B"
    )


def test_archive_filename_expansion() -> None:
    data = patterns.archive_filename_data(
        courseid=9,
        coursename="C",
        courseshortname="QA",
        cmid=23,
        quizid=12,
        quizname="Reference Quiz",
        now=0,
    )
    name = patterns.expand_archive_filename(patterns.DEFAULT_ARCHIVE_FILENAME_PATTERN, data)
    assert name.startswith("quiz-archive-QA-9-Reference Quiz-12-")
    assert "." not in name and "/" not in name
    with pytest.raises(ValueError):
        patterns.expand_archive_filename("bad-$", data)
