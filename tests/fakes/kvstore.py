"""The App Key Value Store behind the fake splunkd (tests/fakes/splunkd.py).

What Splunk's REST API reference ("KV store endpoint descriptions") and
``limits.conf [kvstore]`` say, for the calls the add-on makes:

* a collection holds JSON documents keyed by ``_key`` (a string; generated,
  24 hex digits like a MongoDB ObjectId, when the document has none); each
  document read back carries ``_key`` and ``_user`` (``nobody`` for the
  app-shared documents of ``/servicesNS/nobody/<app>/``);
* ``query`` is a JSON object: field equality (a field holding a list matches
  when one element is equal), the conditional operators ``$gt $gte $lt $lte
  $ne``, ``$regex``, and the logical ``$and $or $not``. Nothing else: any
  other ``$`` operator is refused with 400, so code that would need MongoDB
  operators Splunk does not document (``$in``, ``$exists``, ``$inc``, …)
  fails here instead of in production. The exact text splunkd gives for an
  unsupported operator is not documented; this fake's text is its own;
* ``sort`` is ``field[:1|:-1][,field...]``, ``fields`` is ``a,b`` (include)
  or ``a:0`` (exclude; ``_key`` is always kept unless excluded), ``skip`` and
  ``limit`` (0 = no limit) page the result;
* limits (defaults of ``limits.conf [kvstore]``): at most 50 000 rows per
  query (``max_rows_per_query``: more are silently cut), 1 000 documents
  (``max_documents_per_batch_save``) and 50 MB (``max_size_per_batch_save_mb``)
  per ``batch_save``, 1 000 queries per ``batch_find``
  (``max_queries_per_batch``).

Pure data and rules: no HTTP here.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

COMPARISONS = ("$gt", "$gte", "$lt", "$lte", "$ne", "$regex")
LOGICAL = ("$and", "$or", "$not")


class KVError(Exception):
    """An answer other than 2xx: (HTTP status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class KVLimits:
    max_rows_per_query: int = 50_000
    max_documents_per_batch_save: int = 1_000
    max_size_per_batch_save_mb: int = 50
    max_queries_per_batch: int = 1_000


@dataclass
class Collection:
    app: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)
    accelerated_fields: dict[str, str] = field(default_factory=dict)  # name -> JSON text
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- documents ---------------------------------------------------------------

    def insert(self, doc: Any, user: str) -> str:
        doc = _document(doc)
        key = str(doc.get("_key") or secrets.token_hex(12))
        if key in self.docs:
            raise KVError(409, "A document with the same key and user already exists.")
        self.docs[key] = dict(doc, _key=key, _user=user)
        return key

    def get(self, key: str) -> dict[str, Any]:
        if key not in self.docs:
            raise KVError(404, "Could not find object.")
        return copy.deepcopy(self.docs[key])

    def update(self, key: str, doc: Any, user: str) -> str:
        """POST .../<key>: the document is replaced whole (not merged)."""
        doc = _document(doc)
        if key not in self.docs:
            raise KVError(404, "Could not find object.")
        self.docs[key] = dict(doc, _key=key, _user=user)
        return key

    def delete_key(self, key: str) -> None:
        if key not in self.docs:
            raise KVError(404, "Could not find object.")
        del self.docs[key]

    def delete_where(self, query: dict[str, Any] | None) -> None:
        match = compile_query(query or {})
        for key in [k for k, d in self.docs.items() if match(d)]:
            del self.docs[key]

    def batch_save(self, docs: Any, user: str, limits: KVLimits, size: int) -> list[str]:
        """Insert or replace each document by _key, in order."""
        if not isinstance(docs, list):
            raise KVError(400, "Request body must be a JSON array of documents.")
        if len(docs) > limits.max_documents_per_batch_save:
            raise KVError(
                400,
                "Request exceeds API limits - see limits.conf for details. (Too many documents for a "
                f"single batch save, max = {limits.max_documents_per_batch_save})",
            )
        if size > limits.max_size_per_batch_save_mb * 1024 * 1024:
            raise KVError(
                400,
                "Request exceeds API limits - see limits.conf for details. (Batch save size exceeds "
                f"max = {limits.max_size_per_batch_save_mb} MB)",
            )
        checked = [_document(doc) for doc in docs]  # all or nothing on a malformed document
        keys = []
        for doc in checked:
            key = str(doc.get("_key") or secrets.token_hex(12))
            self.docs[key] = dict(doc, _key=key, _user=user)
            keys.append(key)
        return keys

    def find(self, spec: dict[str, Any], limits: KVLimits) -> list[dict[str, Any]]:
        """One query: {query, sort, skip, limit, fields}, as GET's parameters."""
        query = spec.get("query") or {}
        match = compile_query(query)
        keys = _required_keys(query)  # as MongoDB's _key index would: no scan for a lookup by key
        candidates = self.docs.values() if keys is None else [self.docs[k] for k in keys if k in self.docs]
        rows = [d for d in candidates if match(d)]
        for key, reverse in reversed(_sort_keys(spec.get("sort"))):
            rows.sort(key=lambda d, k=key: _sortable(d.get(k)), reverse=reverse)
        skip, limit = _count(spec.get("skip"), "skip"), _count(spec.get("limit"), "limit")
        rows = rows[skip:]
        cap = limits.max_rows_per_query
        rows = rows[: min(limit, cap) if limit else cap]
        return [_project(copy.deepcopy(d), spec.get("fields")) for d in rows]


def _required_keys(query: Any) -> list[str] | None:
    """The _keys a query restricts itself to (equality, an $or of them, or an
    $and holding one), or None when it can match any document."""
    if not isinstance(query, dict):
        return None
    if isinstance(query.get("_key"), str):
        return [query["_key"]]
    for name, sub in query.items():
        if name == "$or" and isinstance(sub, list):
            parts = [_required_keys(q) for q in sub]
            if parts and all(p is not None for p in parts):
                return list(dict.fromkeys(k for p in parts for k in p))
        if name == "$and" and isinstance(sub, list):
            for q in sub:
                keys = _required_keys(q)
                if keys is not None:
                    return keys
    return None


def _document(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise KVError(400, "Document must be a JSON object.")
    if "_key" in doc and not isinstance(doc["_key"], (str, int)):
        raise KVError(400, "_key must be a string.")
    return {k: v for k, v in doc.items() if k != "_user"}


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise KVError(400, f"Invalid JSON in {what}.") from None


# -- queries ---------------------------------------------------------------------

Matcher = Callable[[dict[str, Any]], bool]


def compile_query(query: Any) -> Matcher:
    """A query object -> a predicate on documents; KVError 400 if malformed."""
    if not isinstance(query, dict):
        raise KVError(400, "Invalid query: a query must be a JSON object.")
    parts: list[Matcher] = []
    for name, condition in query.items():
        if name in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise KVError(400, f"Invalid query: {name} needs a non-empty array.")
            subs = [compile_query(sub) for sub in condition]
            parts.append(_all(subs) if name == "$and" else _any(subs))
        elif name == "$not":
            inner = compile_query(condition)
            parts.append(lambda d, inner=inner: not inner(d))
        elif name.startswith("$"):
            raise KVError(400, f"Invalid query: unsupported operator {name}.")
        else:
            parts.append(_field_matcher(name, condition))
    return _all(parts)


def _all(parts: list[Matcher]) -> Matcher:
    return lambda d: all(p(d) for p in parts)


def _any(parts: list[Matcher]) -> Matcher:
    return lambda d: any(p(d) for p in parts)


def _field_matcher(name: str, condition: Any) -> Matcher:
    if not (isinstance(condition, dict) and condition and all(str(k).startswith("$") for k in condition)):
        return lambda d: _equal(_lookup(d, name), condition)
    tests: list[Callable[[Any], bool]] = []
    for op, operand in condition.items():
        if op == "$not":
            inner = _field_matcher(name, operand)
            tests.append(lambda v, inner=inner, n=name: not inner({n: v}))
        elif op == "$ne":
            tests.append(lambda v, o=operand: not _equal(v, o))
        elif op == "$regex":
            if not isinstance(operand, str):
                raise KVError(400, "Invalid query: $regex needs a string.")
            try:
                pattern = re.compile(operand)
            except re.error:
                raise KVError(400, f"Invalid query: bad regular expression {operand!r}.") from None
            tests.append(lambda v, p=pattern: isinstance(v, str) and p.search(v) is not None)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            tests.append(lambda v, op=op, o=operand: _compare(v, op, o))
        else:
            raise KVError(400, f"Invalid query: unsupported operator {op}.")
    return lambda d: all(t(_lookup(d, name)) for t in tests)


_MISSING = object()


def _lookup(doc: dict[str, Any], name: str) -> Any:
    value: Any = doc
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _equal(value: Any, wanted: Any) -> bool:
    if value is _MISSING:
        return wanted is None
    if isinstance(value, list) and not isinstance(wanted, list):
        return any(_equal(v, wanted) for v in value)
    if _number(value) and _number(wanted):
        return float(value) == float(wanted)
    return type(value) is type(wanted) and value == wanted


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare(value: Any, op: str, operand: Any) -> bool:
    """MongoDB compares within a type only: 5 > "a" is simply false."""
    if value is _MISSING:
        return False
    if isinstance(value, list):
        return any(_compare(v, op, operand) for v in value)
    if not ((_number(value) and _number(operand)) or (isinstance(value, str) and isinstance(operand, str))):
        return False
    if op == "$gt":
        return value > operand
    if op == "$gte":
        return value >= operand
    if op == "$lt":
        return value < operand
    return value <= operand


def _sort_keys(sort: Any) -> list[tuple[str, bool]]:
    if not sort:
        return []
    keys = []
    for part in str(sort).split(","):
        name, _, direction = part.strip().partition(":")
        if not name or direction not in ("", "1", "-1"):
            raise KVError(400, f"Invalid sort: {sort!r}.")
        keys.append((name, direction == "-1"))
    return keys


def _sortable(value: Any) -> tuple:
    # MongoDB's order of types: missing/null, numbers, strings, objects, arrays, booleans.
    if value is None:
        return (0, 0)
    if _number(value):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, bool):
        return (5, value)
    return (3, json.dumps(value, sort_keys=True))


def _count(value: Any, what: str) -> int:
    try:
        number = int(value or 0)
    except (TypeError, ValueError):
        raise KVError(400, f"Invalid {what}: {value!r}.") from None
    if number < 0:
        raise KVError(400, f"Invalid {what}: {value!r}.")
    return number


def _project(doc: dict[str, Any], fields: Any) -> dict[str, Any]:
    if not fields:
        return doc
    wanted = [f.strip() for f in str(fields).split(",") if f.strip()]
    excluded = {f[:-2] for f in wanted if f.endswith(":0")}
    included = [f[:-2] if f.endswith(":1") else f for f in wanted if not f.endswith(":0")]
    if included:
        keep = set(included) | ({"_key"} - excluded)
        return {k: v for k, v in doc.items() if k in keep}
    return {k: v for k, v in doc.items() if k not in excluded}
