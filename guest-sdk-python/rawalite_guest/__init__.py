"""Write RawaLite renderers in Python.

A renderer turns a request into a response and can touch nothing but what
the host grants it in ``rawalite.toml``: tables through :mod:`db`, named file
roots through :mod:`paths`, the signed-in user through :mod:`session`::

    from rawalite_guest import Request, Response, db, escape, export

    def render(req: Request) -> Response:
        name = req.query.get("name", "world")
        n = db.query("SELECT count(*) AS n FROM customers").first()["n"]
        return Response.html(f"<h1>Hello, {escape(name)}!</h1><p>{n} customers</p>")

    WitWorld = export(render)

``rawalite build`` turns it into a component (componentize-py with WASI
stubbed out, so its only imports are the bridge), ``rawalite render`` runs it.

Errors: every capability call raises a subclass of :class:`Error`
(:class:`NotFound`, :class:`Denied`, ...) and ``render`` may raise one too;
the host answers with the matching status. Any other exception is a bug: its
traceback goes to the log and the host stops the guest with its message and
line (``rawalite render`` exits 4).

The guest has no files outside ``paths``: WASI is stubbed out. The time and
entropy come from the host on every request instead (the bridge's ``clock``
and ``random``): ``time.time()``, ``time.time_ns()``, ``os.urandom()``,
``secrets`` and ``random.SystemRandom`` ask the host each call, and
``random``'s module-level generator is reseeded from the host on a
request's first call into it (a ``random.Random()`` made at import time is
the build's: make it inside ``render``). For a ``datetime``, use ``datetime.fromtimestamp(time.time(),
timezone.utc)``: ``datetime.now()``, ``time.monotonic()`` and
``time.perf_counter()`` read WASI's stubbed clocks and stop the guest. Everything a page needs is imported when the component is built
(here, at the top of this module); a module first imported while rendering
may need the file system and stops the guest.
"""

import json
import os
import random
import struct
import sys
import time
import traceback
from urllib.parse import parse_qsl

from componentize_py_types import Err
from wit_world.imports import clock as _clock
from wit_world.imports import log as _log
from wit_world.imports import random as _host_random
from wit_world.imports import session as _session
from wit_world.imports import types as _types

# `rawalite build` imports `db` and `paths` only when the manifest grants
# them, so the component's imports are exactly its grants.
try:
    from wit_world.imports import db as _db
except ImportError:
    _db = None
try:
    from wit_world.imports import paths as _paths
except ImportError:
    _paths = None

__all__ = [
    "Conflict", "Denied", "Error", "Internal", "InvalidInput", "NotFound", "Params",
    "Request", "Response", "Root", "Rows", "TimedOut", "TooLarge", "Unauthenticated",
    "Unavailable", "db", "escape", "export", "paths", "session",
]


# --- errors -----------------------------------------------------------------

class Error(Exception):
    """An error that crosses the boundary; ``message`` is safe to show a user."""

    code = _types.ErrorCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name.lower().replace('_', '-')}: {self.message}"


class InvalidInput(Error):
    """Something malformed: bad SQL, a bad path, a field that does not parse."""
    code = _types.ErrorCode.INVALID_INPUT


class Denied(Error):
    """The manifest does not grant this; the message names the key that would."""
    code = _types.ErrorCode.DENIED


class NotFound(Error):
    """The thing asked for does not exist (answered with 404)."""
    code = _types.ErrorCode.NOT_FOUND


class Conflict(Error):
    """A constraint, a busy database or a concurrent change got in the way."""
    code = _types.ErrorCode.CONFLICT


class TooLarge(Error):
    """A limit was reached: rows, bytes, quota, file size."""
    code = _types.ErrorCode.TOO_LARGE


class Unauthenticated(Error):
    """No one is signed in, or a sign-in failed."""
    code = _types.ErrorCode.UNAUTHENTICATED


class TimedOut(Error):
    """The request's deadline passed while the host was working for it."""
    code = _types.ErrorCode.TIMEOUT


class Unavailable(Error):
    """The capability is not available in this host."""
    code = _types.ErrorCode.UNAVAILABLE


class Internal(Error):
    """The host failed; its log has the details."""
    code = _types.ErrorCode.INTERNAL


_BY_CODE = {cls.code: cls for cls in (
    InvalidInput, Denied, NotFound, Conflict, TooLarge, Unauthenticated,
    TimedOut, Unavailable, Internal,
)}


def _granted(module, capability: str, key: str):
    if module is None:
        raise Denied(f"this guest has no {capability} grant ({key} in the manifest); "
                     "grant it, then run `rawalite build` again")
    return module


def _call(function, *args):
    """Calls a bridge function, raising its error as an :class:`Error` subclass."""
    try:
        return function(*args)
    except Err as e:
        raise _BY_CODE[e.value.code](e.value.message) from None


# --- requests ---------------------------------------------------------------

class Params:
    """Decoded ``key=value`` pairs (a query string or a form body), in order,
    repeated keys kept."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def get(self, key: str, default=None):
        """The first value of ``key``, or ``default``."""
        for k, v in self.pairs:
            if k == key:
                return v
        return default

    def get_all(self, key: str) -> list:
        """Every value of ``key``, in order."""
        return [v for k, v in self.pairs if k == key]

    def text(self, key: str) -> str:
        """The first value of ``key``, trimmed, or "" when it is missing."""
        return self.get(key, "").strip()

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.pairs)

    def __repr__(self) -> str:
        return f"Params({self.pairs!r})"


class Request:
    """One request, as the guest sees it.

    ``base`` is the guest's route prefix (e.g. ``/reports``), ``path`` the rest
    (always starting with ``/``), ``headers`` a list of lower-case
    ``(name, value)`` pairs, ``body`` bytes.
    """

    def __init__(self, raw: _types.Request):
        self.method = raw.method
        self.base = raw.base
        self.path = raw.path
        self.query = Params(raw.query)
        self.headers = raw.headers
        self.body = raw.body

    def header(self, name: str, default=None):
        """The first value of header ``name`` (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    @property
    def is_post(self) -> bool:
        """Whether this is a POST, the method browsers use for forms."""
        return self.method.upper() == "POST"

    def form(self) -> Params:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        text = self.body.decode("utf-8", errors="replace")
        return Params(parse_qsl(text, keep_blank_values=True))

    def link(self, path: str) -> str:
        """A link to ``path`` inside this guest (``base`` + ``path``)."""
        return self.base + path


# --- responses --------------------------------------------------------------

class Response:
    """What the guest answers: a status, headers and a body (bytes)."""

    def __init__(self, status: int = 200, headers=None, body: bytes = b""):
        self.status = status
        self.headers = list(headers or [])
        self.body = body

    @classmethod
    def html(cls, body: str) -> "Response":
        """200 with an HTML page; escape what users typed with :func:`escape`."""
        return cls(200, [("content-type", "text/html; charset=utf-8")], body.encode())

    @classmethod
    def text(cls, body: str) -> "Response":
        """200 with plain text."""
        return cls(200, [("content-type", "text/plain; charset=utf-8")], body.encode())

    @classmethod
    def json(cls, value) -> "Response":
        """200 with ``value`` as JSON."""
        return cls(200, [("content-type", "application/json")], json.dumps(value).encode())

    @classmethod
    def bytes(cls, content_type: str, body: bytes) -> "Response":
        """200 with ``body`` as it is."""
        return cls(200, [("content-type", content_type)], bytes(body))

    @classmethod
    def redirect(cls, location: str) -> "Response":
        """303 See Other to ``location`` (a path on this site)."""
        return cls(303, [("location", location)])

    def with_header(self, name: str, value: str) -> "Response":
        """This response with one more header (the host allows only safe ones)."""
        self.headers.append((name.lower(), value))
        return self

    def with_status(self, status: int) -> "Response":
        """This response with another status."""
        self.status = status
        return self


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})


def escape(text) -> str:
    """``text`` escaped for HTML element content and quoted attribute values."""
    return str(text).translate(_ESCAPES)


# --- db ---------------------------------------------------------------------

class Rows:
    """The result of :func:`db.query`: ``columns`` and ``rows`` (tuples of
    ``None``, ``int``, ``float``, ``str`` or ``bytes``). Iterating gives one
    dict per row."""

    def __init__(self, columns, rows):
        self.columns = columns
        self.rows = rows

    def __iter__(self):
        return (dict(zip(self.columns, row)) for row in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def first(self):
        """The first row as a dict, or ``None``."""
        return dict(zip(self.columns, self.rows[0])) if self.rows else None


class _Db:
    """SQL against the host's database, under this guest's table grants
    (``[guest.db]``). Parameters are bound, never spliced::

        db.query("SELECT name FROM customers WHERE id = ?", [customer_id])
    """

    def query(self, sql: str, params=()) -> Rows:
        """Runs one statement that reads and returns its rows."""
        packed = _call(_granted(_db, "db", "[guest.db]").query_packed, sql, _values(params))
        return _unpack(packed)

    def execute(self, sql: str, params=()):
        """Runs one statement that changes rows; the outcome has ``changed``
        and ``last_insert_rowid``."""
        return _call(_granted(_db, "db", "[guest.db]").execute, sql, _values(params))

    def transaction(self, statements):
        """Runs ``(sql, params)`` pairs all or nothing; one outcome each."""
        db = _granted(_db, "db", "[guest.db]")
        batch = [db.Statement(sql, _values(params)) for sql, params in statements]
        return _call(db.transaction, batch)


def _values(params):
    return [_value(p) for p in params]


def _value(p):
    if p is None:
        return _db.Value_Null()
    if isinstance(p, (bool, int)):
        return _db.Value_Integer(int(p))
    if isinstance(p, float):
        return _db.Value_Real(p)
    if isinstance(p, str):
        return _db.Value_Text(p)
    if isinstance(p, (bytes, bytearray, memoryview)):
        return _db.Value_Blob(bytes(p))
    raise InvalidInput(f"a SQL parameter must be None, int, float, str or bytes, not {type(p).__name__}")


def _unpack(buf: bytes) -> Rows:
    """Rows from the buffer of ``query-packed`` (layout in ``wit/bridge.wit``)."""
    at = 0

    def take(n):
        nonlocal at
        if at + n > len(buf):
            raise Internal("the host sent rows this SDK cannot read")
        chunk = buf[at:at + n]
        at += n
        return chunk

    def u32():
        return struct.unpack("<I", take(4))[0]

    columns = [take(u32()).decode() for _ in range(u32())]
    rows = []
    for _ in range(u32()):
        row = []
        for _ in columns:
            tag = take(1)[0]
            if tag == 0:
                row.append(None)
            elif tag == 1:
                row.append(struct.unpack("<q", take(8))[0])
            elif tag == 2:
                row.append(struct.unpack("<d", take(8))[0])
            elif tag == 3:
                row.append(take(u32()).decode())
            elif tag == 4:
                row.append(bytes(take(u32())))
            else:
                raise Internal("the host sent rows this SDK cannot read")
        rows.append(tuple(row))
    if at != len(buf):
        raise Internal("the host sent rows this SDK cannot read")
    return Rows(columns, rows)


db = _Db()


# --- paths ------------------------------------------------------------------

class Root:
    """An opened root (``[guest.paths]``); every path is relative to it and
    cannot leave it. Writes are atomic."""

    def __init__(self, raw):
        self._raw = raw

    @property
    def writable(self) -> bool:
        """Whether the grant is ``read-write``."""
        return self._raw.access().name == "READ_WRITE"

    def read(self, path: str) -> bytes:
        return _call(self._raw.read, path)

    def write(self, path: str, contents) -> None:
        if isinstance(contents, str):
            contents = contents.encode()
        _call(self._raw.write, path, bytes(contents))

    def list_dir(self, path: str = ""):
        """Entries of a directory (``""`` is the root) with ``name``, ``kind`` (``"file"`` or ``"directory"``),
        ``size`` and ``modified_ms``."""
        return [
            {"name": e.name, "kind": e.kind.name.lower(), "size": e.size, "modified_ms": e.modified_ms}
            for e in _call(self._raw.list_dir, path)
        ]

    def remove(self, path: str) -> None:
        _call(self._raw.remove, path)

    def create_dir(self, path: str) -> None:
        _call(self._raw.create_dir, path)


class _Paths:
    """Named file roots, granted per guest with an access and a quota."""

    def granted(self) -> list:
        """The root names this guest may open."""
        return _paths.granted() if _paths else []

    def open(self, name: str) -> Root:
        return Root(_call(_granted(_paths, "paths", "[guest.paths]").open, name))


paths = _Paths()


# --- session ----------------------------------------------------------------

class _Session:
    """The signed-in user of this request (``[guest.session]``)."""

    def current(self):
        """The user (``id``, ``username``, ``display_name``, ``roles``) or ``None``."""
        return _session.current()

    def has_role(self, role: str) -> bool:
        return _session.has_role(role)

    def login(self, username: str, password: str):
        """Signs a user in (needs ``login = true``); the host checks the
        password and sets the cookie."""
        return _call(_session.login, username, password)

    def logout(self) -> None:
        _session.logout()


session = _Session()


# --- output and export --------------------------------------------------------

class _Output:
    """``sys.stdout``/``sys.stderr``: into the host's log (there is no WASI)."""

    def __init__(self, to):
        self._to = to

    def write(self, text: str) -> int:
        _log.write(self._to, text)
        return len(text)

    def flush(self) -> None:
        pass


sys.stdout = _Output(_log.Output.STDOUT)
sys.stderr = _Output(_log.Output.STDERR)


# --- time and entropy -----------------------------------------------------------
# WASI is stubbed out, so the interpreter's own clock and entropy are the
# build's, frozen into the component: they come from the host instead.

def _urandom(n: int) -> bytes:
    """``os.urandom``: ``n`` bytes from the host's secure generator."""
    if n < 0:
        raise ValueError("negative argument not allowed")
    chunks = []
    while n > 0:
        take = min(n, 65536)
        chunks.append(bytes(_host_random.bytes(take)))
        n -= take
    return b"".join(chunks)


os.urandom = _urandom
random._urandom = _urandom  # random.SystemRandom and secrets draw from it
time.time = lambda: _clock.now_micros() / 1_000_000
time.time_ns = lambda: _clock.now_micros() * 1000

# Each request starts from the build's snapshot, so `random`'s generator
# must be reseeded from the host in every request that uses it. Seeding
# costs ~0.2-0.5 ms (more than the rest of a small page), so it happens on
# a request's first call into `random`, not before every request.
_seeded = True  # at build time nothing is seeded; `render` clears it


def _reseed() -> None:
    global _seeded
    _seeded = True
    random._inst.seed(int.from_bytes(_urandom(32), "little"))


def _seeding(name, method):
    def call(*args, **kwargs):
        if not _seeded:
            if name in ("seed", "setstate"):
                # The guest's own seed: honoured, never replaced.
                globals()["_seeded"] = True
            else:
                _reseed()
        return method(*args, **kwargs)

    call.__name__ = name
    call.__doc__ = method.__doc__
    return call


for _name in dir(random):
    _method = getattr(random, _name)
    if getattr(_method, "__self__", None) is random._inst:
        setattr(random, _name, _seeding(_name, _method))
del _name, _method  # no unwrapped method left behind in this module


def _rewrap_random_taken_early() -> None:
    """``from random import choice`` ahead of importing this SDK took the
    unwrapped function: give that module the wrapped one."""
    for module in list(sys.modules.values()):
        names = getattr(module, "__dict__", None)
        if module is random or names is None:
            continue
        for key, value in list(names.items()):
            if getattr(value, "__self__", None) is random._inst:
                names[key] = getattr(random, value.__name__)


def _source(filename: str) -> str:
    # componentize-py files its sources under /<n>/; the rest is the
    # developer's own path.
    parts = filename.split("/", 2)
    if len(parts) == 3 and parts[0] == "" and parts[1].isdigit():
        return parts[2]
    return filename


def _crash(error: BaseException, where=None):
    """Logs the traceback of a bug and stops the guest with where it was:
    the innermost frame, or ``where`` (a code object) when nothing was raised."""
    # The first frame is export()'s wrapper, not the developer's code.
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    # Without WASI there are no source files to read: frames without lines.
    frames = traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False)
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{_source(f.filename)}", line {f.lineno}, in {f.name}' for f in frames]
    message = f"{type(error).__name__}: {error}"
    lines.append(message)
    sys.stderr.write("\n".join(lines) + "\n")
    if frames:
        location = f"{_source(frames[-1].filename)}:{frames[-1].lineno}"
    elif where is not None:
        location = f"{_source(where.co_filename)}:{where.co_firstlineno}"
    else:
        location = "?"
    _log.panic(message, location)


def export(render):
    """Makes ``render(req) -> Response`` the component's renderer:
    ``WitWorld = export(render)`` at the end of the app module."""

    # At build time, once the app has imported what it uses.
    _rewrap_random_taken_early()

    class WitWorld:
        def render(self, raw: _types.Request) -> _types.Response:
            global _seeded
            # Each request starts from the build's snapshot: without a
            # reseed, random.random() would give every request the same
            # numbers. The first call into `random` reseeds it.
            _seeded = False
            try:
                response = render(Request(raw))
            except Error as e:
                raise Err(_types.Error(e.code, e.message)) from None
            except Exception as e:
                _crash(e)
                raise
            if not isinstance(response, Response):
                _crash(TypeError(f"render must return a Response, not {type(response).__name__}"),
                       render.__code__)
            return _types.Response(response.status, response.headers, bytes(response.body))

    return WitWorld
