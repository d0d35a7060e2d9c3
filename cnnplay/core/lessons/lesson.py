"""One lesson file: what it sets up (network, weights, input, selection, panel, the
control to try) and its three short texts. Parsing checks everything that can be
checked without a window, so a teacher's typo is a message naming the file and
the key, never a traceback, and the other lessons still load.

A lesson file (JSON object):
  title      the lesson's name
  order      its place in the course (lessons are listed by order, then file name)
  see, try, changes   the three parts of the text (MAX_WORDS words at most together)
  network    a network description (Network.from_dict), or
  example    the name of a bundled example (resources/examples/NAME.json or NAME.cnnplay,
             a trained one: its weights come along)
  params     optional hand-set weights: {"layer index": {"weight": nested lists, ...}}
  input      an input source: {"kind": "image", "sample": "camera.png", "mode": "gray",
             "max_side": 128}, {"kind": "signal", "generate": "chirp", "length": 512} or a
             data-set sample {"kind": "dataset", "reference": {"builtin": ..., "params": ...}, "index": 0}
  dataset    optional: {"builtin": "orientations", "params": {...}} to attach
  select     optional: {"layer": 2} and/or {"unit": [layer, [c, y, x]]}
  panel      optional: the title of the dock to bring to the front ("Kernels", "Shift", ...)
  highlight  optional: the control to try, a dotted path from the main window
             (e.g. "inspector.editors.kernel_size")
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NetworkError
from ..layout import Layout
from ..safe_read import SafeReadError, read_regular_file

MAX_WORDS = 130  # "at most about 120 words": a little slack, never a page
MAX_FILE_BYTES = 2 << 20
_TEXT_KEYS = ("see", "try", "changes")
_KNOWN = {"title", "order", "network", "example", "params", "input", "dataset", "select", "panel",
          "highlight", *_TEXT_KEYS}


class LessonError(ValueError):
    """A lesson file that cannot be used; str() names the file and what is wrong."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"lesson {name}: {reason}")


@dataclass(frozen=True)
class Lesson:
    name: str  # the file's stem: the lesson's id (done marks are stored by it)
    title: str
    order: float
    see: str
    try_: str
    changes: str
    spec: dict | None = None
    example: str | None = None
    params: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    dataset: dict | None = None
    select_layer: int | None = None
    select_unit: tuple | None = None  # (layer, (c, y, x))
    panel: str | None = None
    highlight: str | None = None

    @property
    def words(self) -> int:
        return sum(len(t.split()) for t in (self.see, self.try_, self.changes))


def parse_lesson(name: str, data) -> Lesson:
    """Check one lesson's JSON object; LessonError says what is wrong."""
    def fail(reason):
        raise LessonError(name, reason)

    if not isinstance(data, dict):
        fail("the file must hold a JSON object")
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_KNOWN))})")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        fail("'title' must be a non-empty text")
    order = data.get("order", math.inf)
    if isinstance(order, bool) or not isinstance(order, (int, float)):
        fail("'order' must be a number")
    texts = {}
    for key in _TEXT_KEYS:
        v = data.get(key)
        if not isinstance(v, str) or not v.strip():
            fail(f"'{key}' must be a non-empty text")
        texts[key] = " ".join(v.split())
    words = sum(len(t.split()) for t in texts.values())
    if words > MAX_WORDS:
        fail(f"the text has {words} words; a lesson says it in at most {MAX_WORDS}")

    spec, example = data.get("network"), data.get("example")
    if (spec is None) == (example is None):
        fail("give exactly one of 'network' (a description) or 'example' (a bundled example's name)")
    if example is not None and (not isinstance(example, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", example)):
        fail("'example' must be a bundled example's name (letters, digits, '_' and '-')")
    layout = None
    if spec is not None:
        try:
            layout = Layout.from_dict(spec)
        except NetworkError as e:
            fail(f"'network': {e}")

    params = data.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isdigit() and isinstance(v, dict)
                                               for k, v in params.items()):
        fail("'params' must map layer indices (\"0\", \"1\", ...) to {name: values}")
    if layout is not None:
        for key, arrays in params.items():
            i = int(key)
            if i >= len(layout):
                fail(f"'params' names layer {i} but the network has {len(layout)} layers")
            shapes = layout.param_shapes(i)
            for pname, values in arrays.items():
                if pname not in shapes:
                    fail(f"'params': layer {i} has no parameter {pname!r} (it has {', '.join(shapes) or 'none'})")
                got = _nested_shape(values)
                if got != tuple(shapes[pname]):
                    fail(f"'params': layer {i} {pname} has shape {got}, the layer needs {tuple(shapes[pname])}")

    source = data.get("input", {})
    if not isinstance(source, dict) or source.get("kind") not in ("image", "signal", "dataset"):
        fail("'input' must be an input source with \"kind\": \"image\", \"signal\" or \"dataset\"")
    if source.get("kind") == "dataset" and not (isinstance(source.get("reference"), dict)
                                               and "builtin" in source["reference"]):
        fail("a \"dataset\" input must name a built-in data set: {\"reference\": {\"builtin\": ...}, \"index\": i}")
    if "path" in source:
        fail("'input' may name a bundled sample or a generated signal, never a file path")

    dataset = data.get("dataset")
    if dataset is not None and not (isinstance(dataset, dict) and isinstance(dataset.get("builtin"), str)
                                    and isinstance(dataset.get("params", {}), dict)):
        fail("'dataset' must be {\"builtin\": name, \"params\": {...}}")

    select = data.get("select", {})
    if not isinstance(select, dict) or set(select) - {"layer", "unit"}:
        fail("'select' may hold 'layer' and 'unit' only")
    sel_layer = select.get("layer")
    if sel_layer is not None and (isinstance(sel_layer, bool) or not isinstance(sel_layer, int) or sel_layer < 0):
        fail("'select.layer' must be a layer index")
    sel_unit = select.get("unit")
    if sel_unit is not None:
        ok = (isinstance(sel_unit, list) and len(sel_unit) == 2 and isinstance(sel_unit[0], int)
              and isinstance(sel_unit[1], list) and all(isinstance(u, int) and not isinstance(u, bool)
                                                        for u in sel_unit[1]))
        if not ok:
            fail("'select.unit' must be [layer, [c, y, x]] (or [layer, [c, i]] for 1D, [layer, [i]] for a vector)")
        sel_unit = (sel_unit[0], tuple(sel_unit[1]))
    if layout is not None:
        for what, layer in (("layer", sel_layer), ("unit", None if sel_unit is None else sel_unit[0])):
            if layer is not None and layer >= len(layout):
                fail(f"'select.{what}' names layer {layer} but the network has {len(layout)} layers")
        if sel_unit is not None:
            shape = layout.output_shapes[sel_unit[0]]
            if len(sel_unit[1]) != len(shape) or not all(0 <= u < n for u, n in zip(sel_unit[1], shape)):
                fail(f"'select.unit' {list(sel_unit[1])} is outside layer {sel_unit[0]}'s output {list(shape)}")

    for key in ("panel", "highlight"):
        v = data.get(key)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            fail(f"'{key}' must be a text")
    highlight = data.get("highlight")
    if highlight is not None and not re.fullmatch(r"[A-Za-z_][\w ./-]*", highlight):
        fail("'highlight' must be a dotted path such as \"inspector.editors.kernel_size\"")

    return Lesson(name=name, title=title.strip(), order=float(order), see=texts["see"], try_=texts["try"],
                  changes=texts["changes"], spec=spec, example=example, params=params, source=dict(source),
                  dataset=dataset, select_layer=sel_layer, select_unit=sel_unit, panel=data.get("panel"),
                  highlight=highlight)


def _nested_shape(values) -> tuple:
    shape = []
    v = values
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return tuple(shape)


def read_lesson(path: Path) -> Lesson:
    """Read and check one lesson file (regular files only, at most MAX_FILE_BYTES read)."""
    name = path.stem
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES, "lesson file")
        data = json.loads(raw.decode("utf-8"))
    except SafeReadError as e:
        raise LessonError(name, e.reason) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise LessonError(name, f"cannot read the file ({e})") from None
    return parse_lesson(name, data)


def load_lessons(folder: str | Path) -> tuple[list[Lesson], list[str]]:
    """(lessons in course order, messages for the files that were skipped)."""
    lessons, problems = [], []
    try:
        paths = sorted(Path(folder).glob("*.json"))
    except OSError as e:
        return [], [f"cannot list the lessons folder {folder}: {e}"]
    for p in paths:
        try:
            lessons.append(read_lesson(p))
        except LessonError as e:
            problems.append(f"{e} (skipped)")
    lessons.sort(key=lambda lesson: (lesson.order, lesson.name))
    return lessons, problems


def bundled_lessons() -> tuple[list[Lesson], list[str]]:
    from ...bundled import resource
    return load_lessons(resource("lessons"))
