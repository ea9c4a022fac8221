"""A local fake of the splunkd REST endpoints TA-auth0 talks to.

It answers, over HTTPS on 127.0.0.1 only, what splunklib 2.1.1 asks when the
add-on keeps its client secret in Splunk's credential store and masks the
input stanza (SPEC.md §6, PLATFORM.md "The modular input protocol"):

    storage/passwords                  GET list; POST create (name, password, realm) -> 201
    storage/passwords/<realm:user:>    GET; POST update (password); DELETE
    data/inputs                        GET the input kinds (``service.inputs[name]``)
    data/inputs/auth0_activity         GET list; POST create (name, ...) -> 201
    data/inputs/auth0_activity/<name>  GET; POST update (keys merged); DELETE;
                                       POST <name>/enable, <name>/disable
    server/info                        GET (``service.info``, ``splunk_version``):
                                       ``server_roles``, ``instance_type``, ``kvStoreStatus``
    storage/collections/config         GET list; POST create (name, field.*, accelerated_fields.*)
    storage/collections/config/<c>     GET; DELETE
    storage/collections/data/<c>       GET (query, sort, skip, limit, fields); POST insert
                                       (201, 409 on a duplicate _key); DELETE (query)
    storage/collections/data/<c>/<k>   GET; POST replace; DELETE
    storage/collections/data/<c>/batch_save, /batch_find   POST (JSON arrays)

under ``/services/`` and ``/servicesNS/<owner>/<app>/``, as splunkd does:
Atom XML (``<feed>``/``<entry>``, ``<s:dict>`` content with ``eai:acl``), or
JSON with ``output_mode=json``; paging with ``count`` (default 30; ``<= 0``
means all), ``offset``, ``search``, ``sort_key``, ``sort_dir``; errors as
``<response><messages><msg type=...>`` with 400, 401 (missing or wrong
``Authorization: Splunk <session key>``), 404, 405 and 409.

Credentials are namespaced as in splunkd. A POST to
``/servicesNS/nobody/TA-auth0/storage/passwords`` stores an app-shared
credential of TA-auth0 (what ``passwords`` shows). A POST through a
``Service`` built without owner/app (``/services/...``) lands, shared
``user``, in the session user's default app ``search``, where a namespaced
reader does not see it. Input stanzas are visible from every namespace.

The KV store endpoints speak JSON in and out whatever ``output_mode`` says,
as splunkd's do; their rules are in ``kvstore.py``. ``kvstore_status``
other than ``ready`` makes them answer 503 "KV Store is initializing", as
splunkd does while its KV store starts, and shows in ``server/info``.

Unlike splunkd: no capabilities, no input restarts, and the optional
``validator`` stands in for the script's external validation of an input
POST (it runs without the fake's lock held: a validator may call back).
Path segments are decoded with ``unquote_plus`` because splunklib encodes
entity names with ``quote_plus``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit
from xml.sax.saxutils import escape, quoteattr

from tests.fakes.kvstore import Collection, KVError, KVLimits, parse_json

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

APP = "TA-auth0"
KIND = "auth0_activity"
MASK = "********"
VERSION = "9.3.2"
BUILD = "d8bb32809498"
SERVER_NAME = "fake-splunkd"
DEFAULT_COUNT = 30  # splunkd's page size when the request gives no count
ATOM_NS = (
    'xmlns="http://www.w3.org/2005/Atom" xmlns:s="http://dev.splunk.com/ns/rest"'
    ' xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
)


class SplunkdError(Exception):
    """An answer other than 2xx, rendered the way splunkd renders errors."""

    def __init__(self, status: int, message: str, level: str = "ERROR") -> None:
        super().__init__(message)
        self.status, self.message, self.level = status, message, level


@dataclass
class _Request:
    method: str
    owner: str | None  # None for /services/
    app: str | None
    rest: list[str]  # the path after the namespace, decoded
    query: dict[str, str]
    form: dict[str, str]
    fmt: str  # "xml" or "json"
    body: str = ""  # the raw body (the KV store's JSON)
    content_type: str = ""


@dataclass
class _Credential:
    realm: str
    username: str
    clear: str
    app: str
    owner: str
    sharing: str  # "app" or "user"

    @property
    def name(self) -> str:
        return credential_name(self.realm, self.username)


@dataclass
class _Entry:
    name: str
    href: str  # the entity's path, URL-encoded
    acl: dict[str, Any]
    content: dict[str, str]
    author: str = "nobody"
    links: tuple[str, ...] = ("alternate", "list", "_reload", "edit", "remove")
    fields: dict[str, list[str]] = field(default_factory=dict)


def credential_name(realm: str, username: str) -> str:
    """splunkd's name for a credential: ``realm:username:``, ``:`` as ``\\:``."""
    return "{}:{}:".format(realm.replace(":", "\\:"), username.replace(":", "\\:"))


def _parse_credential_name(name: str) -> tuple[str, str]:
    """``realm:user:`` (or ``realm:user``, or ``user``) -> (realm, user)."""
    parts, current, i = [], "", 0
    while i < len(name):
        if name.startswith("\\:", i):
            current, i = current + ":", i + 2
        elif name[i] == ":":
            parts.append(current)
            current, i = "", i + 1
        else:
            current, i = current + name[i], i + 1
    parts.append(current)
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 2:
        raise SplunkdError(404, f"Could not find object id={name}")
    return ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _acl(app: str, owner: str, sharing: str) -> dict[str, Any]:
    return {
        "app": app,
        "can_change_perms": True,
        "can_list": True,
        "can_share_app": True,
        "can_share_global": True,
        "can_share_user": sharing == "user",
        "can_write": True,
        "modifiable": True,
        "owner": owner,
        "perms": {"read": ["*"], "write": ["admin", "sc_admin"]},
        "removable": True,
        "sharing": sharing,
    }


def _xml_value(value: Any) -> str:
    if isinstance(value, dict):
        keys = "".join(f"<s:key name={quoteattr(k)}>{_xml_value(v)}</s:key>\n" for k, v in sorted(value.items()))
        return f"<s:dict>\n{keys}</s:dict>"
    if isinstance(value, list):
        return "<s:list>{}</s:list>".format("".join(f"<s:item>{_xml_value(v)}</s:item>" for v in value))
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else escape(str(value))


class FakeSplunkd:
    """splunkd's REST API for storage/passwords and the auth0_activity inputs.

    ``with FakeSplunkd(ssl_context) as splunkd:`` (or ``start()``/``stop()``),
    then point the add-on at ``splunkd.server_uri`` with
    ``splunkd.session_key``. Thread-safe; accessors return copies.
    ``validator(name, params)`` is called on every input create/update with
    the stanza as it would become; a returned message rejects it with 400.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        session_key: str | None = None,
        *,
        user: str = "splunk-system-user",
        validator: Callable[[str, dict[str, str]], str | None] | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self.session_key = session_key or secrets.token_hex(32)
        self.user = user  # who the session key belongs to (owner of what it creates)
        self._validator = validator
        self._lock = threading.Lock()
        self._credentials: list[_Credential] = []
        self._inputs: dict[str, dict[str, str]] = {}
        self._requests: list[tuple[str, str, int]] = []
        self._failures: list[int] = []
        # The KV store and what server/info says about this instance.
        self._collections: dict[tuple[str, str], Collection] = {}
        self.kv_limits = KVLimits()
        self.kvstore_status = "ready"
        self.server_roles = ["indexer", "license_master", "kv_store"]
        self.instance_type: str | None = None  # "cloud" on Splunk Cloud
        # kv_hook(method, collection, tail): called after each KV store write
        # is applied and before it is answered (a test may kill the client there).
        self.kv_hook: Callable[[str, str, str], None] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- life cycle ---------------------------------------------------------

    def start(self) -> FakeSplunkd:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        # The handshake then runs in each connection's thread (_Handler.setup).
        server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        # shutdown() waits up to one poll (0.005 s): tests stop a splunkd each
        self._thread = threading.Thread(target=server.serve_forever, args=(0.005,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):  # -> Self (typing.Self is 3.11+)
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def server_uri(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSplunkd is not started")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # ---- set-up and inspection for tests -------------------------------------

    @property
    def validator(self) -> Callable[[str, dict[str, str]], str | None] | None:
        return self._validator

    @validator.setter
    def validator(self, validator: Callable[[str, dict[str, str]], str | None] | None) -> None:
        """External validation of input creates and edits (see __init__)."""
        self._validator = validator

    def add_input(self, name: str, **params: object) -> None:
        """Define the stanza ``auth0_activity://name`` (values kept as str)."""
        with self._lock:
            self._inputs[name] = {k: str(v) for k, v in params.items()}

    def remove_input(self, name: str) -> None:
        """Delete the stanza, as an admin deleting the input does (its
        credential stays in storage/passwords, as in Splunk)."""
        with self._lock:
            del self._inputs[name]

    def input_params(self, name: str) -> dict[str, str]:
        """The stanza's keys as they are now (KeyError if there is none)."""
        with self._lock:
            return dict(self._inputs[name])

    def add_password(self, password: str, username: str, realm: str = "", app: str = APP) -> None:
        """Seed an app-shared credential, as if stored earlier."""
        with self._lock:
            cred = _Credential(realm, username, password, app, self.user, "app")
            self._credentials.append(cred)

    def remove_password(self, username: str, realm: str = "") -> None:
        """Delete a credential behind the add-on's back (an admin, a reinstall)."""
        with self._lock:
            self._credentials = [c for c in self._credentials if (c.realm, c.username) != (realm, username)]

    @property
    def passwords(self) -> dict[tuple[str, str], str]:
        """TA-auth0's app-shared credentials: {(realm, username): clear}."""
        with self._lock:
            return {(c.realm, c.username): c.clear for c in self._credentials if c.app == APP and c.sharing == "app"}

    @property
    def all_credentials(self) -> list[dict[str, str]]:
        """Every credential in every namespace, to catch one stored astray."""
        with self._lock:
            return [dict(vars(c)) for c in self._credentials]

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of each request, in order."""
        with self._lock:
            return list(self._requests)

    def add_collection(
        self, name: str, app: str = APP, fields: dict[str, str] | None = None, accelerated_fields=None
    ) -> None:
        """Declare a KV store collection, as an app's collections.conf does."""
        with self._lock:
            accelerated = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (accelerated_fields or {}).items()}
            self._collections[(app, name)] = Collection(app, name, dict(fields or {}), accelerated)

    def load_collections_conf(self, path: str, app: str = APP) -> list[str]:
        """Declare every collection of an app's collections.conf; their names."""
        import configparser

        parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
        parser.optionxform = str  # keys are case-sensitive in .conf files
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
        for name in parser.sections():
            items = dict(parser.items(name))
            fields = {k[len("field.") :]: v for k, v in items.items() if k.startswith("field.")}
            accelerated = {
                k[len("accelerated_fields.") :]: v for k, v in items.items() if k.startswith("accelerated_fields.")
            }
            if (app, name) not in self._collections:  # declared already: keep its documents
                self.add_collection(name, app, fields, accelerated)
        return parser.sections()

    def kv_documents(self, collection: str, app: str = APP) -> list[dict[str, Any]]:
        """Copies of a collection's documents, in insertion order."""
        with self._lock:
            return [json.loads(json.dumps(d)) for d in self._collections[(app, collection)].docs.values()]

    def kv_put(self, collection: str, doc: dict[str, Any], app: str = APP) -> None:
        """Write a document as it is (e.g. to age a lease instead of sleeping)."""
        with self._lock:
            self._collections[(app, collection)].docs[str(doc["_key"])] = dict(doc)

    def kv_clear(self, collection: str, app: str = APP) -> None:
        with self._lock:
            self._collections[(app, collection)].docs.clear()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests, whatever they are, with ``status``."""
        with self._lock:
            self._failures.extend([status] * times)

    # ---- dispatch -------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8") if length else ""
        # splunklib posts its form without a Content-Type; splunkd reads it anyway.
        form = {k: v[-1] for k, v in parse_qs(body, True).items()}
        mode = form.pop("output_mode", None) or query.pop("output_mode", "xml")
        fmt = "json" if mode == "json" else "xml"
        req, message, candidate = None, None, None
        with self._lock:
            try:
                if self._failures:
                    code = self._failures.pop(0)
                    raise SplunkdError(code, f"fake splunkd: injected HTTP {code}")
                if handler.headers.get("Authorization") != f"Splunk {self.session_key}":
                    # splunkd's own words (and level) for a bad or missing key
                    raise SplunkdError(401, "call not properly authenticated", "WARN")
                owner, app, rest = _split_namespace(url.path)
                ctype_in = handler.headers.get("Content-Type", "")
                req = _Request(method, owner, app, rest, query, form, fmt, body, ctype_in)
                candidate = self._input_candidate(req)
            except SplunkdError as err:
                status, ctype, payload = self._render_error(err, fmt)
                self._requests.append((method, handler.path, status))
        if req is not None:
            # External validation runs the add-on, which calls back into this
            # fake (storage/passwords): never while holding the lock.
            if candidate is not None and self._validator is not None:
                message = self._validator(*candidate)
            with self._lock:
                try:
                    if message:
                        raise SplunkdError(400, message)
                    status, ctype, payload = self._route(req)
                except SplunkdError as err:
                    status, ctype, payload = self._render_error(err, fmt)
                self._requests.append((method, handler.path, status))
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Cache-Control", "no-store, max-age=0, must-revalidate")
        if status == 401:
            handler.send_header("WWW-Authenticate", 'Basic realm="/splunk"')
        # splunklib sends "Connection: Close" and closes its end right after
        # reading the headers: unless the answer says "close" too, http.client
        # keeps the body on the connection and that close() discards it.
        if handler.headers.get("Connection", "").lower() == "close":
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(payload)

    def _route(self, req: _Request) -> tuple[int, str, bytes]:
        if req.rest[:2] == ["storage", "passwords"]:
            return self._passwords(req)
        if req.rest[:2] == ["data", "inputs"]:
            return self._data_inputs(req)
        if req.rest[:2] == ["storage", "collections"]:
            return self._kvstore(req)
        if req.rest == ["server", "info"] and req.method == "GET":
            content: dict[str, Any] = {
                "build": BUILD,
                "serverName": SERVER_NAME,
                "version": VERSION,
                "server_roles": list(self.server_roles),
                "kvStoreStatus": self.kvstore_status,
            }
            if self.instance_type:
                content["instance_type"] = self.instance_type
            acl = _acl("system", "nobody", "system")
            href = "/services/server/info"
            entry = _Entry("server-info", href, acl, content, links=("alternate",))
            return self._render_feed(req, "server-info", href, [entry])
        raise SplunkdError(404, "Not Found")

    # ---- storage/passwords ----------------------------------------------------

    def _passwords(self, req: _Request) -> tuple[int, str, bytes]:
        rest, form = req.rest[2:], req.form
        if req.app is None:
            coll = "/services/storage/passwords"
        else:
            coll = f"/servicesNS/{req.owner}/{req.app}/storage/passwords"
        if not rest and req.method == "GET":
            entries = [_credential_entry(c) for c in self._visible(req)]
            return self._render_feed(req, "passwords", coll, entries)
        if not rest and req.method == "POST":
            _check_args(form, allowed=("name", "password", "realm"), needed=("name", "password"))
            app, owner, sharing = self._write_namespace(req)
            new = _Credential(form.get("realm", ""), form["name"], form["password"], app, owner, sharing)
            for c in self._credentials:
                same_place = (c.app, c.sharing) == (app, sharing) and (sharing == "app" or c.owner == owner)
                if same_place and c.name == new.name:
                    raise SplunkdError(409, f"An object with name={new.name} already exists")
            self._credentials.append(new)
            return self._render_feed(req, "passwords", coll, [_credential_entry(new)], status=201)
        if len(rest) != 1:
            raise SplunkdError(404, "Not Found")
        wanted = _parse_credential_name(rest[0])
        found = [c for c in self._visible(req) if (c.realm, c.username) == wanted]
        if not found:
            raise SplunkdError(404, f"Could not find object id={rest[0]}")
        if req.method == "GET":
            return self._render_feed(req, "passwords", coll, [_credential_entry(c) for c in found])
        # A write goes to the copy in the namespace of the URL, if there is one.
        here = [c for c in found if c.app == req.app and (c.sharing == "app") == (req.owner == "nobody")]
        target = (here or found)[0]
        if req.method == "POST":
            _check_args(form, allowed=("password",), needed=("password",))
            target.clear = form["password"]
            return self._render_feed(req, "passwords", coll, [_credential_entry(target)])
        if req.method == "DELETE":
            self._credentials.remove(target)
            entries = [_credential_entry(c) for c in self._visible(req)]
            return self._render_feed(req, "passwords", coll, entries)
        raise SplunkdError(405, f"Method {req.method} not allowed")

    def _visible(self, req: _Request) -> list[_Credential]:
        if req.app is None:  # /services/: this fake shows them all
            return list(self._credentials)
        return [
            c
            for c in self._credentials
            if req.app in ("-", c.app) and (c.sharing != "user" or req.owner in ("-", c.owner))
        ]

    def _write_namespace(self, req: _Request) -> tuple[str, str, str]:
        """(app, owner, sharing) of a credential created through this URL."""
        if req.app is None:  # /services/ = the session user in their default app
            return "search", self.user, "user"
        if "-" in (req.owner, req.app):
            raise SplunkdError(400, "Cannot create an object in a wildcard namespace")
        if req.owner == "nobody":
            return req.app, self.user, "app"
        return req.app, str(req.owner), "user"

    # ---- data/inputs ---------------------------------------------------------

    def _data_inputs(self, req: _Request) -> tuple[int, str, bytes]:
        base = f"/servicesNS/nobody/{APP}/data/inputs"
        coll = f"{base}/{KIND}"
        rest, form, method = req.rest[2:], req.form, req.method
        if not rest and method == "GET":
            # splunklib counts an entry with a "create" link as an input kind.
            acl = _acl("system", "nobody", "system")
            entry = _Entry(KIND, coll, acl, {}, links=("create", "list", "_reload"))
            return self._render_feed(req, "inputs", base, [entry])
        if not rest or rest[0] != KIND:
            raise SplunkdError(404, "Not Found")
        if len(rest) == 1 and method == "GET":
            return self._render_feed(req, KIND, coll, [self._input_entry(n) for n in self._inputs])
        if len(rest) == 1 and method == "POST":
            _check_args(form, allowed=None, needed=("name",))
            name = form.pop("name")
            if name in self._inputs:
                raise SplunkdError(409, f"An object with name={name} already exists")
            self._inputs[name] = dict(form)
            return self._render_feed(req, KIND, coll, [self._input_entry(name)], status=201)
        name, action = rest[1], rest[2:]
        if name not in self._inputs:
            raise SplunkdError(404, f"Could not find object id={name}")
        if action and (action not in (["enable"], ["disable"]) or method != "POST"):
            raise SplunkdError(404, "Not Found")
        if action:
            self._inputs[name]["disabled"] = "1" if action == ["disable"] else "0"
        elif method == "POST":
            if "name" in form:
                raise SplunkdError(400, 'Argument "name" is not supported by this handler.')
            self._inputs[name] = dict(self._inputs[name], **form)
        elif method == "DELETE":
            del self._inputs[name]
            return self._render_feed(req, KIND, coll, [self._input_entry(n) for n in self._inputs])
        elif method != "GET":
            raise SplunkdError(405, f"Method {method} not allowed")
        return self._render_feed(req, KIND, coll, [self._input_entry(name)])

    def _input_candidate(self, req: _Request) -> tuple[str, dict[str, str]] | None:
        """(name, the stanza as it would become) for an input create or edit,
        which splunkd validates externally before it applies it."""
        rest = req.rest[2:]
        if req.method != "POST" or req.rest[:2] != ["data", "inputs"] or rest[:1] != [KIND]:
            return None
        form = {k: v for k, v in req.form.items() if k != "name"}
        if len(rest) == 1 and req.form.get("name") and req.form["name"] not in self._inputs:
            return req.form["name"], form
        if len(rest) == 2 and rest[1] in self._inputs and "name" not in req.form:
            return rest[1], dict(self._inputs[rest[1]], **form)
        return None

    def _input_entry(self, name: str) -> _Entry:
        href = "/servicesNS/nobody/{}/data/inputs/{}/{}".format(APP, KIND, quote(name, safe=""))
        content = {"disabled": "0", "host": SERVER_NAME, "index": "default"}
        content.update(self._inputs[name])
        toggle = "enable" if content["disabled"] in ("1", "true") else "disable"
        links = ("alternate", "list", "_reload", "edit", "remove", toggle)
        fields = {"optional": sorted(content), "required": [], "wildcard": []}
        return _Entry(name, href, _acl(APP, "nobody", "app"), content, "nobody", links, fields)

    # ---- storage/collections (the KV store) -----------------------------------

    def _kvstore(self, req: _Request) -> tuple[int, str, bytes]:
        if self.kvstore_status != "ready":
            # What splunkd answers while its KV store starts (or has failed).
            raise SplunkdError(503, "KV Store is initializing. Please try again later.")
        kind, rest = req.rest[2:3], req.rest[3:]
        app = req.app or "system"
        if kind == ["config"]:
            return self._kv_config(req, app, rest)
        if kind != ["data"] or not rest:
            raise SplunkdError(404, "Not Found")
        collection = self._collections.get((app, rest[0]))
        if collection is None:
            raise SplunkdError(404, f"Could not find collection={rest[0]} in app={app}")
        user = "nobody" if req.owner in (None, "nobody") else str(req.owner)
        tail = rest[1:]
        try:
            status, answer = self._kv_data(req, collection, user, tail)
        except KVError as err:
            raise SplunkdError(err.status, err.message) from None
        if req.method != "GET" and not (tail == ["batch_find"]) and self.kv_hook is not None:
            self.kv_hook(req.method, collection.name, "/".join(tail))
        payload = b"" if answer is None else json.dumps(answer).encode()
        return status, "application/json; charset=UTF-8", payload

    def _kv_data(self, req: _Request, c: Collection, user: str, tail: list[str]) -> tuple[int, Any]:
        method, limits = req.method, self.kv_limits
        if method == "POST" and "application/json" not in req.content_type:
            raise KVError(400, "Request body must be JSON (Content-Type: application/json).")
        if not tail:
            if method == "GET":
                spec = {k: req.query.get(k) for k in ("sort", "skip", "limit", "fields")}
                spec["query"] = parse_json(req.query["query"], "query") if req.query.get("query") else {}
                return 200, c.find(spec, limits)
            if method == "POST":
                return 201, {"_key": c.insert(parse_json(req.body, "the request body"), user)}
            if method == "DELETE":
                c.delete_where(parse_json(req.query["query"], "query") if req.query.get("query") else None)
                return 200, None
        elif tail == ["batch_save"] and method == "POST":
            docs = parse_json(req.body, "the request body")
            return 200, c.batch_save(docs, user, limits, len(req.body.encode()))
        elif tail == ["batch_find"] and method == "POST":
            specs = parse_json(req.body, "the request body")
            if not isinstance(specs, list) or not all(isinstance(q, dict) for q in specs):
                raise KVError(400, "Request body must be a JSON array of queries.")
            if len(specs) > limits.max_queries_per_batch:
                raise KVError(400, f"Request exceeds API limits (max = {limits.max_queries_per_batch} queries).")
            return 200, [c.find(spec, limits) for spec in specs]
        elif len(tail) == 1:
            if method == "GET":
                return 200, c.get(tail[0])
            if method == "POST":
                return 200, {"_key": c.update(tail[0], parse_json(req.body, "the request body"), user)}
            if method == "DELETE":
                c.delete_key(tail[0])
                return 200, None
        else:
            raise KVError(404, "Not Found")
        raise KVError(405, f"Method {method} not allowed")

    def _kv_config(self, req: _Request, app: str, rest: list[str]) -> tuple[int, str, bytes]:
        coll = f"/servicesNS/{req.owner or 'nobody'}/{app}/storage/collections/config"
        mine = [c for (a, _), c in sorted(self._collections.items()) if a == app]
        if not rest and req.method == "GET":
            return self._render_feed(req, "collections-conf", coll, [self._collection_entry(c) for c in mine])
        if not rest and req.method == "POST":
            _check_args(req.form, allowed=None, needed=("name",))
            name = req.form["name"]
            if (app, name) in self._collections:
                raise SplunkdError(409, f"An object with name={name} already exists")
            fields = {k[6:]: v for k, v in req.form.items() if k.startswith("field.")}
            accelerated = {k[19:]: v for k, v in req.form.items() if k.startswith("accelerated_fields.")}
            self._collections[(app, name)] = Collection(app, name, fields, accelerated)
            entry = self._collection_entry(self._collections[(app, name)])
            return self._render_feed(req, "collections-conf", coll, [entry], status=201)
        if len(rest) == 1 and (app, rest[0]) in self._collections:
            if req.method == "GET":
                entry = self._collection_entry(self._collections[(app, rest[0])])
                return self._render_feed(req, "collections-conf", coll, [entry])
            if req.method == "DELETE":
                del self._collections[(app, rest[0])]
                return self._render_feed(req, "collections-conf", coll, [])
            raise SplunkdError(405, f"Method {req.method} not allowed")
        raise SplunkdError(404, f"Could not find object id={'/'.join(rest)}")

    @staticmethod
    def _collection_entry(c: Collection) -> _Entry:
        href = f"/servicesNS/nobody/{c.app}/storage/collections/config/{quote(c.name, safe='')}"
        content = {f"field.{k}": v for k, v in c.fields.items()}
        content.update({f"accelerated_fields.{k}": v for k, v in c.accelerated_fields.items()})
        acl = _acl(c.app, "nobody", "app")
        acl["perms"] = {"read": ["admin", "sc_admin"], "write": ["admin", "sc_admin"]}
        return _Entry(c.name, href, acl, content)

    # ---- rendering -------------------------------------------------------------

    def _render_feed(
        self, req: _Request, title: str, coll: str, entries: list[_Entry], status: int = 200
    ) -> tuple[int, str, bytes]:
        entries, total, offset, per_page = _page(entries, req.query)
        origin, updated = self.server_uri, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        coll_links = {rel: f"{coll}/{rel.replace('create', '_new')}" for rel in ("create", "_reload", "_acl")}
        entry_links = [
            {rel: e.href if rel in ("alternate", "list", "edit", "remove") else f"{e.href}/{rel}" for rel in e.links}
            for e in entries
        ]
        if req.fmt == "json":
            doc = {
                "links": coll_links,
                "origin": origin + coll,
                "updated": updated,
                "generator": {"build": BUILD, "version": VERSION},
                "entry": [
                    {
                        "name": e.name,
                        "id": origin + e.href,
                        "updated": updated,
                        "links": links,
                        "author": e.author,
                        "acl": e.acl,
                        "fields": {"required": [], "optional": [], "wildcard": [], **e.fields},
                        "content": dict(sorted(e.content.items()), **{"eai:acl": None}),
                    }
                    for e, links in zip(entries, entry_links)
                ],
                "paging": {"total": total, "perPage": per_page, "offset": offset},
                "messages": [],
            }
            return status, "application/json; charset=UTF-8", json.dumps(doc, indent=2).encode()
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<?xml-stylesheet type="text/xml" href="/static/atom.xsl"?>',
            f"<feed {ATOM_NS}>",
            f"<title>{escape(title)}</title>",
            f"<id>{escape(origin + coll)}</id>",
            f"<updated>{updated}</updated>",
            f'<generator build="{BUILD}" version="{VERSION}"/>',
            "<author><name>Splunk</name></author>",
            *(f"<link href={quoteattr(h)} rel={quoteattr(r)}/>" for r, h in coll_links.items()),
            f"<opensearch:totalResults>{total}</opensearch:totalResults>",
            f"<opensearch:itemsPerPage>{per_page}</opensearch:itemsPerPage>",
            f"<opensearch:startIndex>{offset}</opensearch:startIndex>",
            "<s:messages/>",
        ]
        for e, links in zip(entries, entry_links):
            content: dict[str, Any] = dict(e.content, **{"eai:acl": e.acl})
            if e.fields:
                content["eai:attributes"] = {f"{k}Fields": v for k, v in e.fields.items()}
            out += [
                "<entry>",
                f"<title>{escape(e.name)}</title>",
                f"<id>{escape(origin + e.href)}</id>",
                f"<updated>{updated}</updated>",
                *(f"<link href={quoteattr(h)} rel={quoteattr(r)}/>" for r, h in links.items()),
                f"<author><name>{escape(e.author)}</name></author>",
                f'<content type="text/xml">{_xml_value(content)}</content>',
                "</entry>",
            ]
        out.append("</feed>\n")
        return status, "text/xml; charset=utf-8", "\n".join(out).encode()

    @staticmethod
    def _render_error(err: SplunkdError, fmt: str) -> tuple[int, str, bytes]:
        if fmt == "json":
            doc = {"messages": [{"type": err.level, "text": err.message}]}
            return err.status, "application/json; charset=UTF-8", json.dumps(doc).encode()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
            f"    <msg type={quoteattr(err.level)}>{escape(err.message)}</msg>\n"
            "  </messages>\n</response>\n"
        )
        return err.status, "text/xml; charset=utf-8", body.encode()


def _split_namespace(path: str) -> tuple[str | None, str | None, list[str]]:
    segments = [unquote_plus(s) for s in path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash names the same endpoint
    if segments[:1] == ["services"]:
        return None, None, segments[1:]
    if segments[:1] == ["servicesNS"] and len(segments) >= 3:
        return segments[1], segments[2], segments[3:]
    raise SplunkdError(404, "Not Found")


def _check_args(form: dict[str, str], allowed: tuple[str, ...] | None, needed: tuple[str, ...]) -> None:
    for key in form:
        if allowed is not None and key not in allowed:
            raise SplunkdError(400, f'Argument "{key}" is not supported by this handler.')
    for key in needed:
        if key not in form or (key == "name" and not form[key]):
            raise SplunkdError(400, f"Missing argument {key}")


def _credential_entry(c: _Credential) -> _Entry:
    prefix = f"/servicesNS/{'nobody' if c.sharing == 'app' else c.owner}/{c.app}"
    href = f"{prefix}/storage/passwords/{quote(c.name, safe='')}"
    # A stand-in for splunk.secret's "$7$..." form: looks right, decrypts to nothing.
    digest = hashlib.sha256(f"{c.name}\0{c.clear}".encode()).digest()
    content = {
        "clear_password": c.clear,
        "encr_password": "$7$" + base64.b64encode(digest).decode("ascii"),
        "password": MASK,
        "realm": c.realm,
        "username": c.username,
    }
    return _Entry(c.name, href, _acl(c.app, c.owner, c.sharing), content, c.owner)


def _page(entries: list[_Entry], query: dict[str, str]) -> tuple[list[_Entry], int, int, int]:
    """splunkd's paging and filtering arguments: count, offset, search, sort_*."""
    try:
        count = int(query.get("count", DEFAULT_COUNT))
        offset = int(query.get("offset", 0))
    except ValueError as err:
        raise SplunkdError(400, f"Invalid paging argument: {err}") from None
    search = query.get("search", "").strip().lower()
    if search not in ("", "*"):
        key, _, value = search.rpartition("=")  # "field=value" or a bare term

        def matches(e: _Entry) -> bool:
            values = dict(e.content, name=e.name)
            if key:
                values = {k: v for k, v in values.items() if k.lower() == key}
            return any(fnmatchcase(v.lower(), f"*{value}*") for v in values.values())

        entries = [e for e in entries if matches(e)]
    sort_key = query.get("sort_key", "name")
    entries = sorted(
        entries,
        key=lambda e: e.name if sort_key == "name" else e.content.get(sort_key, ""),
        reverse=query.get("sort_dir") == "desc",
    )
    page = entries[offset:] if count <= 0 else entries[offset : offset + count]
    return page, len(entries), offset, count if count > 0 else len(entries)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSplunkd

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up or failing the TLS handshake is not our bug


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive when asked; Content-Length always
    server_version = "Splunkd"
    sys_version = ""
    timeout = 10
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        # Headers and body go out in two writes: without this, Nagle holds the
        # body until the client's delayed ACK (40 ms) on a kept-alive connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()  # here, so a stuck client stalls only itself
        super().setup()

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")

    def log_message(self, format: str, *args: object) -> None:
        pass  # FakeSplunkd.requests is the log
