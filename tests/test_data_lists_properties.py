"""Property tests of the list reader: round trips through both separators, and bad input.

Whatever a list file holds, reading it either gives the videos it names or raises ValueError
naming the file and the line; never another exception, never a wrong label.
"""

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)
from ats_video.data.lists import VideoRecord, read_video_list

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LINE_BREAKS = "\n\r"
# Any character but line breaks and surrogates (which UTF-8 cannot hold).
CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS)


def _is_path(text: str) -> bool:
    return text == text.strip() and text != ""


PATHS = st.text(CHARACTERS, min_size=1, max_size=30).filter(_is_path)
CLASS_NAMES = st.lists(
    st.text(CHARACTERS, min_size=1, max_size=12).filter(_is_path), min_size=1, max_size=5,
    unique=True,
)  # fmt: skip


def _write(tmp_path, data: bytes) -> str:
    path = tmp_path / "l.csv"
    path.write_bytes(data)
    return str(path)


@SETTINGS
@given(
    videos=st.lists(st.tuples(PATHS, st.integers(0, 10**6)), min_size=1, max_size=8),
    bom=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_space_separated_round_trip(tmp_path, videos, bom, newline):
    text = "".join(f"{path} {label}{newline}" for path, label in videos)
    path = _write(tmp_path, ("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    expected = [VideoRecord(os.path.join("/p", p), label) for p, label in videos]
    assert read_video_list(path, prefix="/p", separator=" ") == expected


@SETTINGS
@given(data=st.data(), names=CLASS_NAMES)
def test_comma_separated_round_trip_with_indices_and_names(tmp_path, data, names):
    labels = st.one_of(st.integers(0, len(names) - 1), st.sampled_from(names).filter(
        lambda name: "," not in name and not re.fullmatch(r"[0-9]+", name)
    ))  # fmt: skip
    videos = data.draw(st.lists(st.tuples(PATHS, labels), min_size=1, max_size=8))
    text = "".join(f"{path},{label}\n" for path, label in videos)
    path = _write(tmp_path, text.encode("utf-8"))
    expected = [
        VideoRecord(os.path.join("/p", p), label if isinstance(label, int) else names.index(label))
        for p, label in videos
    ]
    assert read_video_list(path, prefix="/p", separator=",", class_names=names) == expected


def _where_pattern(line_number: int | None = None) -> str:
    return rf"^l\.csv line {line_number if line_number is not None else '[0-9]+'}: "


@SETTINGS
@given(data=st.binary(max_size=200), separator=st.sampled_from(["auto", " ", ","]))
def test_any_bytes_read_or_raise_value_error_naming_file_and_line(tmp_path, data, separator):
    path = _write(tmp_path, data)
    try:
        videos = read_video_list(path, separator=separator)
    except ValueError as error:
        assert re.match(_where_pattern(), str(error)) or str(error).startswith(
            f"{path}: the list holds no videos"
        ), str(error)
    else:
        assert videos and all(isinstance(v.label, int) and v.label >= 0 for v in videos)


NOT_PLAIN_INTEGERS = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters=","),
    min_size=1,
    max_size=8,
).filter(lambda label: not re.fullmatch(r"[0-9]+", label) and label == label.strip())


@SETTINGS
@given(
    good=st.lists(st.tuples(PATHS, st.integers(0, 99)), max_size=5),
    bad=NOT_PLAIN_INTEGERS,
    separator=st.sampled_from([" ", ","]),
)
def test_a_bad_label_names_its_line(tmp_path, good, bad, separator):
    text = "".join(f"{p}{separator}{label}\n" for p, label in good) + f"bad.mp4{separator}{bad}\n"
    path = _write(tmp_path, text.encode("utf-8"))
    with pytest.raises(ValueError, match=_where_pattern(len(good) + 1)):
        read_video_list(path, separator=separator)


@SETTINGS
@given(
    good=st.lists(st.tuples(PATHS, st.integers(0, 99)), max_size=5),
    bad=st.binary(min_size=1, max_size=8).filter(
        lambda b: _not_utf8(b) and b"\n" not in b and b"\r" not in b  # one line
    ),
)
def test_bytes_that_are_not_utf8_name_their_line(tmp_path, good, bad):
    data = "".join(f"{p} {label}\n" for p, label in good).encode("utf-8") + b"x" + bad + b" 1\n"
    with pytest.raises(ValueError, match=_where_pattern(len(good) + 1) + "not valid UTF-8"):
        read_video_list(_write(tmp_path, data), separator=" ")


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
