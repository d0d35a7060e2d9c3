""".cnnplay files: a zip of the JSON description and an .npz of the weights.

Loading never runs code: JSON is parsed as data and the arrays are read with
allow_pickle=False. Every problem becomes a NetworkError naming the file, the
member and the field. Writing is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import NetworkError
from .network import Network

FORMAT = "cnnplay"
VERSION = 1
DESCRIPTION = "network.json"
WEIGHTS = "weights.npz"
MAX_MEMBER_BYTES = 2 << 30  # refuse zip bombs before inflating


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def network_bytes(net: Network, extra: dict | None = None) -> bytes:
    """The .cnnplay file content for `net`; `extra` is stored as JSON beside it (e.g. a session)."""
    header = {"format": FORMAT, "version": VERSION, "seed": net.seed, "network": net.to_dict()}
    if extra is not None:
        header["extra"] = extra
    arrays = {f"{i}/{name}": a for i in range(len(net)) for name, a in net.params(i).items()}
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(DESCRIPTION, json.dumps(header, indent=1))
        z.writestr(WEIGHTS, npz.getvalue())
    return buf.getvalue()


def save_network(net: Network, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Save atomically; on failure the previous file at `path` is intact and
    a NetworkError says why."""
    data = network_bytes(net, extra)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise NetworkError(f"cannot save {os.fspath(path)}: {e.strerror or e}") from None


def load_network(path: str | os.PathLike) -> Network:
    return load_bundle(path)[0]


def load_bundle(path: str | os.PathLike) -> tuple[Network, dict | None]:
    """(network, extra) from a .cnnplay file; NetworkError naming what is wrong."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise NetworkError(f"{name} is a folder, not a .cnnplay file") from None
    except OSError as e:
        raise NetworkError(f"cannot read {name}: {e.strerror or e}") from None
    return bundle_from_bytes(data, name)


def bundle_from_bytes(data: bytes, name: str = "<memory>") -> tuple[Network, dict | None]:
    def fail(reason, member=None):
        where = f"{name}" + (f" [{member}]" if member else "")
        return NetworkError(f"{where}: {reason}")

    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        members = {i.filename: i for i in z.infolist()}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise fail(f"not a .cnnplay file (not a readable zip: {e})") from None
    with z:
        missing = [m for m in (DESCRIPTION, WEIGHTS) if m not in members]
        if missing:
            raise fail(f"missing member(s) {', '.join(missing)}")
        extra_members = sorted(set(members) - {DESCRIPTION, WEIGHTS})
        if extra_members:
            raise fail(f"unexpected member(s) {', '.join(extra_members)}")
        for m in (DESCRIPTION, WEIGHTS):
            if members[m].file_size > MAX_MEMBER_BYTES:
                raise fail(f"member is {members[m].file_size} bytes, too large to load", m)
        try:
            header_bytes = z.read(DESCRIPTION)
            weights_bytes = z.read(WEIGHTS)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise fail(f"damaged zip data ({e})") from None

    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"not valid JSON ({e})", DESCRIPTION) from None
    if not isinstance(header, dict):
        raise fail("must hold a JSON object", DESCRIPTION)
    if header.get("format") != FORMAT:
        raise fail(f"field 'format' must be {FORMAT!r}, not {header.get('format')!r}", DESCRIPTION)
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f"field 'version' must be an integer, not {version!r}", DESCRIPTION)
    if version > VERSION:
        raise fail(f"written by a newer cnnplay (file version {version}, this one reads up to {VERSION})",
                   DESCRIPTION)
    seed = header.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail(f"field 'seed' must be a non-negative integer, not {seed!r}", DESCRIPTION)
    extra = header.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise fail(f"field 'extra' must be an object, not {type(extra).__name__}", DESCRIPTION)
    try:
        net = Network.from_dict(header.get("network"), seed=seed)
    except NetworkError as e:
        raise fail(f"field 'network': {e}", DESCRIPTION) from None

    try:
        with np.load(io.BytesIO(weights_bytes), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # numpy raises many types for damaged archives
        raise fail(f"unreadable weights ({type(e).__name__}: {e})", WEIGHTS) from None
    expected = {f"{i}/{n}" for i in range(len(net)) for n in net.params(i)}
    if set(arrays) != expected:
        missing = sorted(expected - set(arrays))
        unexpected = sorted(set(arrays) - expected)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise fail("; ".join(parts), WEIGHTS)
    for key, a in arrays.items():
        i, pname = key.split("/", 1)
        if a.dtype != np.float32:
            raise fail(f"array {key} must be float32, not {a.dtype}", WEIGHTS)
        try:
            net.set_params(int(i), **{pname: a})
        except NetworkError as e:
            raise fail(f"array {key}: {e}", WEIGHTS) from None
    return net, extra
