"""Lesson files (core, no Qt): the bundled course parses, and every malformed
file gets a message naming the file and the key while the others still load."""

import json

import pytest

from cnnplay.core.layout import Layout
from cnnplay.core.lessons import MAX_WORDS, LessonError, bundled_lessons, load_lessons, parse_lesson

GOOD = {
    "title": "T", "order": 1, "see": "a b c", "try": "d e", "changes": "f",
    "network": {"input": [1, 16, 16], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}]},
    "input": {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 16},
    "select": {"layer": 0, "unit": [0, [1, 5, 5]]},
}


def test_bundled_course_is_complete_and_valid():
    lessons, problems = bundled_lessons()
    assert problems == []
    titles = [lesson.title for lesson in lessons]
    for concept in ("Convolution is filtering", "Local connection", "Weight sharing", "Kernel size",
                    "Input channels", "Output channels", "Stride", "Dilation", "Stacking", "The receptive field grows",
                    "Pooling", "Flatten + linear", "Training", "What a unit learned", "1D signals"):
        assert any(t.startswith(concept) for t in titles), concept
    assert len(lessons) >= 15 and [lesson.order for lesson in lessons] == sorted(lesson.order for lesson in lessons)
    for lesson in lessons:
        assert lesson.words <= MAX_WORDS
        if lesson.spec is not None:
            layout = Layout.from_dict(lesson.spec)  # raises if invalid
            assert layout.error is None
        assert lesson.highlight, f"{lesson.name} highlights no control"


def test_a_good_lesson_parses():
    lesson = parse_lesson("x", GOOD)
    assert lesson.select_unit == (0, (1, 5, 5)) and lesson.select_layer == 0 and lesson.try_ == "d e"


@pytest.mark.parametrize("change, words", [
    ({"title": ""}, "'title'"),
    ({"see": None}, "'see'"),
    ({"try": "word " * (MAX_WORDS + 1)}, "words"),
    ({"network": {"input": [1, 4, 4], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 9}]}},
     "'network': layer 0"),
    ({"example": "default"}, "exactly one of"),
    ({"params": {"0": {"weight": [[1.0]]}}}, "shape"),
    ({"params": {"3": {"weight": []}}}, "names layer 3"),
    ({"params": {"0": {"gamma": []}}}, "no parameter 'gamma'"),
    ({"input": {"kind": "video"}}, "'input'"),
    ({"input": {"kind": "image", "path": "/etc/passwd"}}, "never a file path"),
    ({"select": {"unit": [0, [9, 0, 0]]}}, "outside layer 0"),
    ({"select": {"layer": 5}}, "names layer 5"),
    ({"select": {"row": 1}}, "'select'"),
    ({"highlight": "a;rm -rf"}, "'highlight'"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_malformed_lessons_say_what_is_wrong(change, words):
    data = dict(GOOD, **change)
    with pytest.raises(LessonError) as e:
        parse_lesson("bad_one", data)
    assert str(e.value).startswith("lesson bad_one: ") and words in str(e.value)


def test_a_malformed_file_is_skipped_with_a_message(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(dict(GOOD, order=2, title="Second")))
    (tmp_path / "b.json").write_text(json.dumps(dict(GOOD, order=1, title="First")))
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "d.json").write_text(json.dumps([1, 2]))
    lessons, problems = load_lessons(tmp_path)
    assert [lesson.title for lesson in lessons] == ["First", "Second"]
    assert len(problems) == 2
    assert problems[0].startswith("lesson c: cannot read the file") and problems[0].endswith("(skipped)")
    assert "lesson d: the file must hold a JSON object" in problems[1]


def test_a_lesson_that_is_no_regular_file_or_too_large_is_skipped(tmp_path):
    import os

    from cnnplay.core.lessons import lesson as lesson_module
    os.mkfifo(tmp_path / "fifo.json")  # would block a plain open()
    (tmp_path / "big.json").write_bytes(b" " * (lesson_module.MAX_FILE_BYTES + 1))
    lessons, problems = load_lessons(tmp_path)
    assert lessons == [] and len(problems) == 2
    assert problems[0].startswith("lesson big: ") and problems[1].startswith("lesson fifo: ")
