"""Deadline parsing: every accepted form and every refused one with its message."""

from __future__ import annotations

import pytest

from storage.errors import UserInputError
from tuner.core.durations import format_duration, parse_duration, parse_duration_range


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("1.5s", 1.5), ("500ms", 0.5), ("2m", 120.0), (" 3s ", 3.0),
     (".5s", 0.5), ("1e3ms", 1.0)],
)
def test_accepted_forms(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("60", "deadline '60' has no unit; write 60s, 500ms or 2m"),
        ("-1s", "deadline '-1s' must be greater than 0; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("0", "deadline '0' must be greater than 0; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("0s", "deadline '0s' must be greater than 0; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("abc", "deadline 'abc' is not a duration; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("5h", "deadline '5h' is not a duration; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("", "deadline '' is not a duration; write e.g. 60s, 1.5s, 500ms or 2m"),
    ],
)
def test_refused_forms_say_how_to_fix(text, message):
    with pytest.raises(UserInputError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


def test_range_is_evenly_spaced_and_inclusive():
    assert parse_duration_range("0.5s:5s:10") == pytest.approx(
        [0.5 + 0.5 * index for index in range(10)])
    assert parse_duration_range("500ms:2s:4") == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert parse_duration_range("1s:1s:1") == (1.0,)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("0.5s:5s", "must be START:STOP:COUNT"), ("5s:1s:3", "STOP must not be below START"),
     ("1s:5s:0", "COUNT must be a whole number >= 1"), ("1s:5s:x", "COUNT must be"),
     ("1:5s:3", "has no unit")],
)
def test_bad_ranges(text, fragment):
    with pytest.raises(UserInputError, match=fragment):
        parse_duration_range(text)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (1.5, "1.5s"), (120, "2m"),
                                               (90, "90s")])
def test_format_round_trips(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
