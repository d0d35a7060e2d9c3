"""Ready example networks (resources/examples/*.json) and the first-start session.

An example file holds a title, a one-line description, an input source (see
input_panel), the network description and optionally hand-set parameters
(e.g. the edge detector's Sobel filters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundled import resource
from ..core.errors import InputError, NetworkError
from ..core.network import Network
from ..core.session import Session
from .input_panel import DEFAULT_MAX_SIDE, DEFAULT_SAMPLE, image_source, load_input, signal_source

DEFAULT_EXAMPLE = "default"


@dataclass
class Example:
    name: str
    title: str
    description: str
    spec: dict
    source: dict
    params: dict


def example_paths() -> list[Path]:
    """Every bundled example, the default network (the one cnnplay starts with) first."""
    try:
        return sorted(resource("examples").glob("*.json"), key=lambda p: (p.stem != DEFAULT_EXAMPLE, p.stem))
    except OSError:
        return []


def read_example(path: str | Path) -> Example:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NetworkError(f"{path.name}: cannot read the example ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("network"), dict):
        raise NetworkError(f"{path.name}: not an example file (no 'network' object)")
    return Example(path.stem, str(data.get("title", path.stem)), str(data.get("description", "")),
                   data["network"], dict(data.get("input") or {}), dict(data.get("params") or {}))


def apply_example(session: Session, example: Example, x: np.ndarray, source: dict, notes=()) -> None:
    """Make the session hold the example's network on input x (one call for an undo step)."""
    spec = dict(example.spec, input=list(x.shape))
    net = Network.from_dict(spec, seed=session.seed, partial=True)
    session.replace(net, input_array=x, input_source=source, spec=spec)
    if notes:
        session.set_input_notes(notes)
    set_example_params(session, example)


def set_example_params(session: Session, example: Example) -> None:
    for key, arrays in example.params.items():
        i = int(key)
        if i < len(session.network):
            session.set_layer_params(i, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})


def input_for_shape(shape, current: dict | None = None, preferred: dict | None = None):
    """(array, source, notes) of an input that fits a network made for `shape`:
    an image in the matching colour mode for (1|3, H, W), a signal for (C, L).
    Keeps the current input's file or sample where it can."""
    current = current or {}
    if preferred:
        try:
            return load_input(preferred)
        except InputError:
            pass
    if len(shape) == 2:
        c, n = shape
        return load_input(signal_source(generate="sine", length=n, channels=c))
    mode = "gray" if shape[0] == 1 else "rgb"
    if current.get("kind") == "image":
        try:
            return load_input(dict(current, mode=mode))
        except InputError:
            pass
    return load_input(image_source(mode=mode, max_side=DEFAULT_MAX_SIDE, sample=DEFAULT_SAMPLE))


def default_session() -> Session:
    """First start: the default small conv net on a bundled photo."""
    ex = read_example(resource("examples", f"{DEFAULT_EXAMPLE}.json"))
    x, source, notes = input_for_shape(ex.spec["input"], preferred=ex.source)
    session = Session(ex.spec, x, source, seed=0)
    if notes:
        session.set_input_notes(notes)
    set_example_params(session, ex)
    return session
