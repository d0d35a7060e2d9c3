""".cnnplay files: a zip of the JSON description and an .npz of the weights.

Layout (version 1): a zip with exactly two members,
- ``network.json``: ``{"format": "cnnplay", "version": 1, "seed": int,
  "network": {...}, "extra": {...}?}``
- ``weights.npz``: one float32 ``.npy`` array per parameter, named
  ``"<layer index>/<parameter name>"`` with the layer's exact shape.

Version 2 (written only when a training state is saved; version-1 files still
load, and files without training are still written as version 1) adds
- ``network.json``: ``"training": {...}``, a Trainer.state() without its arrays,
  plus ``"array_shapes": {name: [shape]}`` declaring each array;
- ``training.npz``: those float32 arrays (optimizer buffers, per-batch history),
  each checked against its declared shape, and the total against the network's
  parameter count, before anything is inflated.

Loading never runs code: JSON is parsed as data, and the .npy members are read
by hand (header parsed, dtype and shape checked, raw bytes copied), so a pickled
object is refused before anything is unpickled. Sizes are checked against the
zip directory and the network's own parameter shapes before anything is
inflated, so a zip bomb is refused without allocating. Every problem becomes a
`FileFormatError` (a NetworkError) naming the file, the member and the field;
nothing else escapes. Writing is atomic (temporary file, fsync, rename).
`load_keeping_network` (the app's restore and Open) leaves out a training state
that cannot be read instead of refusing the file; the rest is checked the same.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import memory
from .errors import NetworkError, short_repr
from .network import MAX_SEED, Network
from .safe_read import SafeReadError, check_regular_file, read_regular_file

FORMAT = "cnnplay"
VERSION = 2  # the newest version this cnnplay reads (and writes when saving a training state)
DESCRIPTION = "network.json"
WEIGHTS = "weights.npz"
TRAINING = "training.npz"
HEADER_KEYS = ("format", "version", "seed", "network", "extra", "training")
MAX_TRAINING_HISTORY = 1_000_000  # per-batch entries of a training state (see core/training)
MAX_DESCRIPTION_BYTES = 16 << 20  # a description (plus the session extra) is a few KB
MAX_NPY_HEADER = 4096  # numpy writes 128 bytes or so
MAX_MEMBERS = 64  # a .cnnplay holds 2 members; its .npz one per parameter array (checked later)


class FileFormatError(NetworkError):
    """A .cnnplay file that cannot be loaded.

    `path` is the file, `member` the zip member at fault (or None), `key` the
    JSON field or weight array at fault (or None). When the description holds
    an invalid network, `layer`, `layer_type` and `field` are those of the
    core's NetworkError, so a caller can point at the layer.
    """

    def __init__(self, reason: str, path: str, member: str | None = None, key: str | None = None,
                 layer: int | None = None, field: str | None = None, layer_type: str | None = None):
        self.path = path
        self.member = member
        self.key = key
        super().__init__(reason, layer, field, layer_type)

    def _format(self) -> str:
        where = self.path + (f" [{self.member}]" if self.member else "")
        return f"{where}: {self.reason}"


# -- writing -------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one.

    The data goes to a temporary file in the same folder, is flushed and
    fsynced, then renamed over `path` (and the folder fsynced). An existing
    file keeps its permissions; a new one gets 0644. OSError on failure, with
    the old file untouched and no temporary file left behind.
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
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


def network_bytes(net: Network, extra: dict | None = None, training: dict | None = None) -> bytes:
    """The .cnnplay file content for `net`; `extra` is stored as JSON beside it (e.g. a session),
    `training` is a Trainer.state() (JSON data plus float32 arrays under "arrays").

    `extra` must be what the loader gives back: a dict of plain JSON (str keys;
    lists or tuples, str, bool, None, numbers; integers of at most 1000 digits;
    nested at most MAX_EXTRA_DEPTH deep) and, with the description, at most
    MAX_DESCRIPTION_BYTES; anything else is refused with a FileFormatError
    before a byte is written. A file without training is written as version 1."""
    header = {"format": FORMAT, "version": 1, "seed": net.seed, "network": net.to_dict()}
    if extra is not None:
        if not isinstance(extra, dict):
            raise FileFormatError(f"cannot save: 'extra' must be a dict, not {type(extra).__name__}", "<memory>",
                                  key="extra")
        _check_plain_json(extra, "extra", 0)
        header["extra"] = extra
    train_npz = None
    if training is not None:
        if not isinstance(training, dict):
            raise NetworkError(f"a training state must be an object, not {type(training).__name__}", field="training")
        tarrays = {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in training.get("arrays", {}).items()}
        state = {k: v for k, v in training.items() if k != "arrays"}
        state["array_shapes"] = {k: list(a.shape) for k, a in tarrays.items()}
        header["version"] = 2
        header["training"] = state
        buf = io.BytesIO()
        np.savez(buf, **tarrays)
        train_npz = buf.getvalue()
    text = json.dumps(header, indent=1).encode("utf-8")
    if len(text) > MAX_DESCRIPTION_BYTES:
        raise FileFormatError(f"cannot save: the description and 'extra' take {memory.format_bytes(len(text))}, "
                              f"more than a file may hold ({memory.format_bytes(MAX_DESCRIPTION_BYTES)})",
                              "<memory>", key="extra")
    arrays = {f"{i}/{name}": np.ascontiguousarray(a, dtype=np.float32)
              for i in range(len(net)) for name, a in net.params(i).items()}
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(DESCRIPTION, text)
        z.writestr(WEIGHTS, npz.getvalue())
        if train_npz is not None:
            z.writestr(TRAINING, train_npz)
    return buf.getvalue()


MAX_EXTRA_DEPTH = 64


def _check_plain_json(v, where: str, depth: int) -> None:
    """Refuse what json would write but the loader would not give back unchanged."""
    def bad(reason):
        return FileFormatError(f"cannot save: {where} {reason}; 'extra' must be plain JSON the loader "
                               "gives back unchanged", "<memory>", key="extra")
    if depth > MAX_EXTRA_DEPTH:
        raise bad(f"is nested more than {MAX_EXTRA_DEPTH} levels deep")
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if abs(v) >= 10 ** 1000:
            raise bad("is an integer of more than 1000 digits")
        return
    if isinstance(v, float):
        return  # NaN and infinity too: the loader reads them back (a layer then says they are not finite)
    if isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                raise bad(f"has the key {short_repr(k)}, not a string")
            _check_plain_json(item, f"{where}[{short_repr(k, 40)}]", depth + 1)
        return
    if isinstance(v, (list, tuple)):  # a tuple comes back as a list
        for i, item in enumerate(v):
            _check_plain_json(item, f"{where}[{i}]", depth + 1)
        return
    raise bad(f"is {type(v).__name__} {short_repr(v, 40)}, not a JSON value")


def save_network(net: Network, path: str | os.PathLike, extra: dict | None = None,
                 training: dict | None = None) -> None:
    """Save atomically (with a Trainer.state() when `training` is given); on
    failure the previous file at `path` is intact and a NetworkError says why."""
    data = network_bytes(net, extra, training)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise FileFormatError(f"cannot save: {e.strerror or e}", os.fspath(path)) from None


# -- reading -------------------------------------------------------------------

def load_network(path: str | os.PathLike) -> Network:
    return load_bundle(path)[0]


def max_file_bytes() -> int:
    """No valid file is larger than the parameter budget plus a description."""
    return memory.limit_bytes() + MAX_DESCRIPTION_BYTES + (1 << 20)


def load_bundle(path: str | os.PathLike) -> tuple[Network, dict | None]:
    """(network, extra) from a .cnnplay file; FileFormatError naming what is wrong."""
    return load_all(path)[:2]


def load_all(path: str | os.PathLike) -> tuple[Network, dict | None, dict | None]:
    """(network, extra, training state or None) from a .cnnplay file; the
    training state is Trainer.state()'s form (give it to Trainer.from_state)."""
    return all_from_bytes(_file_bytes(path), os.fspath(path))


def _file_bytes(path: str | os.PathLike) -> bytes:
    name = os.fspath(path)
    limit = max_file_bytes()
    try:  # a regular file only (never a FIFO, a device or /proc), at most `limit` bytes read
        size = check_regular_file(name, ".cnnplay file").st_size
        data = read_regular_file(name, limit, ".cnnplay file") if size <= limit else None
    except SafeReadError as e:
        if e.kind != "too_large":
            raise FileFormatError(e.reason, name) from None
        data = None
    if data is None:
        shown = memory.format_bytes(size) if size > limit else f"more than {memory.format_bytes(limit)}"
        raise FileFormatError(f"the file is {shown}, larger than any network cnnplay can hold "
                              f"({memory.format_bytes(limit)})", name)
    return data


def bundle_from_bytes(data: bytes, name: str = "<memory>") -> tuple[Network, dict | None]:
    """(network, extra) from the bytes of a .cnnplay file named `name` (for messages)."""
    return all_from_bytes(data, name)[:2]


def all_from_bytes(data: bytes, name: str = "<memory>") -> tuple[Network, dict | None, dict | None]:
    """(network, extra, training state or None) from the bytes of a .cnnplay file."""
    return _read(data, name, lenient=False)[:3]


def load_keeping_network(path: str | os.PathLike) -> tuple[Network, dict | None, dict | None, str | None]:
    """As load_all, but a training state that cannot be read (damaged, or claiming more
    than the network could ever need) is left out instead of refusing the whole file:
    (network, extra, training state or None, why it was left out or None). The network,
    its weights and the extra are checked exactly as load_all checks them."""
    return _read(_file_bytes(path), os.fspath(path), lenient=True)


def _read(data: bytes, name: str, lenient: bool):
    reader = _Reader(bytes(data), name, lenient)
    try:
        net, extra, training = reader.read()
        problem = reader.training_problem
        return net, extra, training, None if problem is None else problem.reason
    except NetworkError:
        raise
    except MemoryError:
        raise FileFormatError("not enough memory to load it", name) from None
    except RecursionError:
        raise FileFormatError("its content is nested too deeply", name) from None
    except Exception as e:  # a last guard: nothing but a NetworkError leaves the loader
        raise FileFormatError(f"cannot be read ({type(e).__name__}: {short_repr(str(e), 200)})", name) from None


class _Reader:
    def __init__(self, data: bytes, name: str, lenient: bool = False):
        self.data = data
        self.name = name
        self.lenient = lenient  # a training state that cannot be read is left out, not fatal
        self.training_problem: FileFormatError | None = None

    def drop_training(self, error: FileFormatError) -> None:
        """The training state is unusable: refuse the file, or (lenient) go on without it."""
        if not self.lenient:
            raise error
        self.training_problem = error

    def fail(self, reason: str, member: str | None = None, key: str | None = None, **kw) -> FileFormatError:
        return FileFormatError(reason, self.name, member, key, **kw)

    def read(self) -> tuple[Network, dict | None, dict | None]:
        if not self.data:
            raise self.fail("the file is empty (0 bytes)")
        z = self.open_zip(self.data, None, "not a .cnnplay file (not a zip archive)")
        with z:
            has_training = TRAINING in z.namelist()
            members = self.members(z, None, (DESCRIPTION, WEIGHTS) + ((TRAINING,) if has_training else ()))
            header_bytes = self.read_member(z, members[DESCRIPTION], None, MAX_DESCRIPTION_BYTES)
            header = self.parse_header(header_bytes)
            seed, extra = self.check_header(header)
            training = header.get("training")
            if training is not None and not has_training:
                training = self.drop_training(self.fail(
                    f"field 'training' is present but the member {TRAINING} is missing", DESCRIPTION, "training"))
            if training is None and has_training:
                self.drop_training(self.fail(f"unexpected member(s) {TRAINING!r} (no field 'training' describes it)"))
            try:
                net = Network.from_dict(header["network"], seed=seed)
            except NetworkError as e:
                raise self.fail(f"field 'network': {e}", DESCRIPTION, "network",
                                layer=e.layer, field=e.field, layer_type=e.layer_type) from None
            expected = {f"{i}/{n}": a.shape for i in range(len(net)) for n, a in net.params(i).items()}
            # An .npz stores each array with a small header; nothing valid is larger.
            bound = sum(math.prod(s) * 4 + MAX_NPY_HEADER + 512 for s in expected.values()) + 1024
            weights_bytes = self.read_member(z, members[WEIGHTS], None, bound)
            if training is not None:
                try:
                    shapes = self.training_shapes(training, expected)
                    tbound = sum(math.prod(s) * 4 + MAX_NPY_HEADER + 512 for s in shapes.values()) + 1024
                    training_bytes = self.read_member(z, members[TRAINING], None, tbound)
                except FileFormatError as e:
                    training = self.drop_training(e)
        if training is not None:
            try:
                arrays = self.read_weights(training_bytes, shapes, TRAINING)
                training = {k: v for k, v in training.items() if k != "array_shapes"}
                training["arrays"] = arrays
            except FileFormatError as e:
                training = self.drop_training(e)
        for key, a in self.read_weights(weights_bytes, expected).items():
            i, pname = key.split("/", 1)
            try:
                net.set_params(int(i), **{pname: a})
            except NetworkError as e:
                raise self.fail(f"array {key}: {e}", WEIGHTS, key, layer=e.layer, field=e.field,
                                layer_type=e.layer_type) from None
        return net, extra, training

    def training_shapes(self, training, expected: dict[str, tuple]) -> dict[str, tuple]:
        """The declared arrays of a training state, bounded: optimizer buffers
        no larger than 2 per parameter, history no longer than MAX_TRAINING_HISTORY.
        Lenient, buffers that do not fit the network (a state saved after an edit
        reshaped layers, sized for the network before the edit) count apart, within
        the memory budget as any allocation: they are read so that core.training.fit
        can name them, then left out."""
        where = "training.array_shapes"
        if not isinstance(training, dict):
            raise self.fail(f"field 'training' must be an object, not {_json_type(training)}", DESCRIPTION, "training")
        shapes = training.get("array_shapes", {})
        if not isinstance(shapes, dict):
            raise self.fail(f"field '{where}' must be an object, not {_json_type(shapes)}", DESCRIPTION, where)
        out = {}
        params = sum(math.prod(s) for s in expected.values())
        optimizer_total = stale_total = 0
        for key, shape in shapes.items():
            if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(n) and 0 <= n <= 2**40 for n in shape):
                raise self.fail(f"field '{where}' entry {short_repr(key)} must be a list of sizes, not "
                                f"{short_repr(shape)}", DESCRIPTION, where)
            size = math.prod(shape)
            if key.startswith("history/"):
                if len(shape) != 1 or size > MAX_TRAINING_HISTORY:
                    raise self.fail(f"array {key} must be 1D with at most {MAX_TRAINING_HISTORY} entries, not "
                                    f"{tuple(shape)}", DESCRIPTION, where)
            elif key.startswith("optimizer/"):
                parts = key.split("/")
                fits = len(parts) == 4 and expected.get(f"{parts[1]}/{parts[2]}") == tuple(shape)
                if self.lenient and not fits:
                    stale_total += size
                else:
                    optimizer_total += size
            else:
                raise self.fail(f"unknown training array {short_repr(key)}", DESCRIPTION, where)
            out[key] = tuple(shape)
        if optimizer_total > 2 * params:
            raise self.fail(f"the optimizer arrays claim {optimizer_total} values, more than twice the network's "
                            f"{params} parameters: refused", DESCRIPTION, where)
        if stale_total * 4 > memory.limit_bytes():
            raise self.fail(f"the optimizer arrays that do not fit the network claim "
                            f"{memory.format_bytes(stale_total * 4)}, more than the memory limit of "
                            f"{memory.format_bytes(memory.limit_bytes())}: refused", DESCRIPTION, where)
        return out

    # -- zip ---------------------------------------------------------------------
    def open_zip(self, data: bytes, member: str | None, what: str, max_members: int = MAX_MEMBERS) -> zipfile.ZipFile:
        count = _zip_directory_count(data)
        if count is not None and count > max_members:
            raise self.fail(f"the archive holds {'more than ' if count >= 0xFFFF else ''}{count} members; "
                            f"a valid one holds at most {max_members}: refused", member)
        try:
            return zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
                NotImplementedError, IndexError, KeyError) as e:
            if data[:4] == b"PK\x03\x04":  # a zip's start, but its directory at the end is missing or damaged
                what = "the file is truncated or damaged (its zip directory is missing)"
                detail = "" if str(e) == "File is not a zip file" else f" ({short_repr(str(e), 120)})"
            else:
                detail = ""
            raise self.fail(what + detail, member) from None

    def members(self, z: zipfile.ZipFile, member: str | None, wanted) -> dict[str, zipfile.ZipInfo]:
        """The archive's entries by name; exactly `wanted`, each readable."""
        infos = z.infolist()
        names = [i.filename for i in infos]
        what = "member" if member is None else "array"
        if len(infos) > len(wanted) + MAX_MEMBERS:  # (the directory lied about its count)
            raise self.fail(f"the archive holds {len(infos)} members, not {len(wanted)}: refused", member)
        counts = collections.Counter(names)  # linear: a file with 40,000 members is refused at once
        dupes = sorted(n for n, c in counts.items() if c > 1)
        if dupes:
            raise self.fail(f"duplicate {what}(s) {', '.join(map(short_repr, dupes))}", member)
        missing = [m for m in wanted if m not in counts]
        if missing:
            raise self.fail(f"missing {what}(s) {', '.join(missing)}", member)
        unexpected = sorted(set(names) - set(wanted))
        if unexpected:
            shown = ", ".join(short_repr(n) for n in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
            raise self.fail(f"unexpected {what}(s) {shown}", member)
        for info in infos:
            inner = info.filename if member is None else member
            if info.flag_bits & 0x1:
                raise self.fail(f"{info.filename} is encrypted", inner)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.fail(f"{info.filename} uses an unsupported compression method "
                                f"({info.compress_type})", inner)
        return {i.filename: i for i in infos}

    def read_member(self, z: zipfile.ZipFile, info: zipfile.ZipInfo, member: str | None, limit: int) -> bytes:
        """A member's bytes, refusing before inflation when the directory says it is too big."""
        where = info.filename if member is None else member
        if info.file_size > limit:
            raise self.fail(f"{info.filename} claims {memory.format_bytes(info.file_size)} unpacked, more than "
                            f"a valid file can hold ({memory.format_bytes(limit)}): refused", where)
        try:
            with z.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
            raise self.fail(f"damaged zip data ({short_repr(str(e), 120)})", where) from None
        except Exception as e:  # zlib.error and friends
            raise self.fail(f"damaged zip data ({type(e).__name__}: {short_repr(str(e), 120)})", where) from None
        if len(data) > limit:
            raise self.fail(f"{info.filename} unpacks to more than {memory.format_bytes(limit)}: refused", where)
        return data

    # -- description -------------------------------------------------------------
    def parse_header(self, raw: bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"not UTF-8 text (byte {e.start})", DESCRIPTION) from None
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as e:
            raise self.fail(f"the key {short_repr(e.key)} appears twice in one JSON object; "
                            "which one is meant is unclear", DESCRIPTION, e.key if isinstance(e.key, str) else None) from None
        except json.JSONDecodeError as e:
            raise self.fail(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", DESCRIPTION) from None
        except (ValueError, RecursionError) as e:  # e.g. a 5000-digit number, 100000 nested lists
            raise self.fail(f"not valid JSON ({short_repr(str(e), 120)})", DESCRIPTION) from None

    def check_header(self, header) -> tuple[int, dict | None]:
        fail = self.fail
        if not isinstance(header, dict):
            raise fail(f"must hold a JSON object, not {_json_type(header)}", DESCRIPTION)
        if header.get("format") != FORMAT:
            raise fail(f"field 'format' must be {FORMAT!r}, not {short_repr(header.get('format'))}",
                       DESCRIPTION, "format")
        version = header.get("version")
        if not _is_int(version) or version < 1:
            raise fail(f"field 'version' must be a positive integer, not {short_repr(version)}",
                       DESCRIPTION, "version")
        if version > VERSION:
            raise fail(f"written by a newer cnnplay (file version {short_repr(version)}, this one reads up to "
                       f"{VERSION}); please update cnnplay", DESCRIPTION, "version")
        unknown = sorted(k for k in header if k not in HEADER_KEYS)
        if unknown:
            raise fail(f"unknown field(s) {', '.join(short_repr(k) for k in unknown[:5])} "
                       f"(version {VERSION} has: {', '.join(HEADER_KEYS)})", DESCRIPTION, unknown[0])
        if "training" in header and version < 2:
            raise fail("field 'training' needs file version 2 or later", DESCRIPTION, "training")
        seed = header.get("seed", 0)
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise fail(f"field 'seed' must be an integer from 0 to 2**63-1, not {short_repr(seed)}",
                       DESCRIPTION, "seed")
        if "network" not in header:
            raise fail("field 'network' is missing", DESCRIPTION, "network")
        extra = header.get("extra")
        if extra is not None and not isinstance(extra, dict):
            raise fail(f"field 'extra' must be an object, not {_json_type(extra)}", DESCRIPTION, "extra")
        return seed, extra

    # -- weights -----------------------------------------------------------------
    def read_weights(self, raw: bytes, expected: dict[str, tuple], member: str = WEIGHTS) -> dict[str, np.ndarray]:
        if not expected and not raw:
            return {}
        z = self.open_zip(raw, member, "not an .npz archive", len(expected) + MAX_MEMBERS)
        with z:
            members = self.members(z, member, [k + ".npy" for k in expected])
            return {key: self.read_array(z, members[key + ".npy"], key, shape, member)
                    for key, shape in expected.items()}

    def read_array(self, z: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, shape: tuple,
                   member: str = WEIGHTS) -> np.ndarray:
        fail = self.fail
        WEIGHTS = member  # noqa: N806 (messages name the member the array is in)
        nbytes = math.prod(shape) * 4
        data = self.read_member(z, info, WEIGHTS, nbytes + MAX_NPY_HEADER + 16)
        f = io.BytesIO(data)
        try:
            major, minor = np.lib.format.read_magic(f)
            if (major, minor) == (1, 0):
                ashape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_NPY_HEADER)
            elif (major, minor) == (2, 0):
                ashape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_NPY_HEADER)
            else:
                raise fail(f"array {key}: unsupported .npy version {major}.{minor}", WEIGHTS, key)
        except NetworkError:
            raise
        except Exception as e:  # numpy raises ValueError, SyntaxError, ... for damaged headers
            raise fail(f"array {key}: not a valid .npy array ({short_repr(str(e), 120)})", WEIGHTS, key) from None
        if dtype.hasobject:
            raise fail(f"array {key} holds Python objects; cnnplay never unpickles", WEIGHTS, key)
        if dtype.kind != "f" or dtype.itemsize != 4 or dtype.shape:
            raise fail(f"array {key} must be float32, not {dtype}", WEIGHTS, key)
        if tuple(ashape) != tuple(shape):
            needs = f"layer {key.split('/')[0]} needs" if member == "weights.npz" else "the description declares"
            raise fail(f"array {key} has shape {tuple(ashape)} but {needs} {tuple(shape)}", WEIGHTS, key)
        body = data[f.tell():]
        if len(body) != nbytes:
            raise fail(f"array {key} holds {len(body)} bytes of data, not {nbytes} (truncated or padded)",
                       WEIGHTS, key)
        a = np.frombuffer(body, dtype=dtype)
        a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
        return np.ascontiguousarray(a, dtype=np.float32)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_type(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


class _DuplicateKey(ValueError):
    def __init__(self, key):
        self.key = key
        super().__init__(f"duplicate key {short_repr(key)}")


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _zip_directory_count(data: bytes) -> int | None:
    """The member count a zip's end record declares (0xFFFF: zip64, more), or an
    upper bound from its directory size (each entry takes at least 46 bytes);
    None when there is no end record (the zip reader then says what is wrong)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if at < 0 or at + 22 > len(data):
        return None
    count = int.from_bytes(data[at + 10:at + 12], "little")
    cd_size = int.from_bytes(data[at + 12:at + 16], "little")
    return max(count, min(cd_size // 1024, 0xFFFF))
