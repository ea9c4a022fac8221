"""A small reader of SPL for the knowledge tests: it follows the fields a
search uses through its pipes and fails on anything it does not know.

`Spl(...).analyze(search)` expands the add-on's macros, decides what the
search reads (the add-on's events, ta_auth0.log, or a CIM data model), and
checks every field each command reads exists at that point (after `stats`
only its outputs do) and every literal compared with an enumerated field is
a value that field takes. `Expr` parses eval expressions; `evaluate` runs the
few eval functions props.conf uses, with Splunk's null semantics. `matches`
runs an event type's search on one event.

Only the commands, options and functions the add-on's searches use are
known: anything else raises SplError, so a search it cannot read fails its
test instead of passing it. Teach it the command when a search needs one.
"""

from __future__ import annotations

import fnmatch
import json
import re
import urllib.parse
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

# Fields Splunk gives every event (no date_*: those exist only for events
# whose timestamp Splunk extracted from the text, not for modular inputs).
SPLUNK_FIELDS = frozenset(
    {"_time", "_raw", "_indextime", "host", "source", "sourcetype", "index", "splunk_server", "eventtype", "tag"}
)
# What tstats can group by without a data model: indexed fields only.
INDEXED_FIELDS = frozenset({"_time", "host", "source", "sourcetype", "index", "splunk_server"})
# Search keywords that are not fields.
SEARCH_MODIFIERS = frozenset({"earliest", "latest", "index", "source", "sourcetype", "host", "eventtype", "tag"})

# --- SPL: tokens and eval expressions -------------------------------------------------


class SplError(AssertionError):
    pass


SEARCH_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|<=|>=|==|=|<|>)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)
    |(?P<word>[^\s"()=!<>,]+))""",
    re.X,
)
EVAL_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<qfield>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>==|!=|<=|>=|=|<|>|\+|-|\*|/|%|\.|\(|\)|,))""",
    re.X,
)
# The same inside stats and tstats, where a field name may hold dots
# (Authentication.user); there `.` never concatenates.
STATS_TOKEN = re.compile(EVAL_TOKEN.pattern.replace("[A-Za-z0-9_]*)", "[A-Za-z0-9_.]*)"), re.X)


def tokens(text: str, pattern: re.Pattern) -> List[Tuple[str, str]]:
    out, position, text = [], 0, text.rstrip()
    while position < len(text):
        match = pattern.match(text, position)
        if not match or match.end() == position:
            raise SplError(f"cannot read {text[position : position + 30]!r} in {text!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "qfield":
            kind, value = "field", value[1:-1]
        out.append((kind, value))
        position = match.end()
    return out


# Eval functions the analyzer accepts (a typo like `nulif` fails), and the
# subset it can evaluate (enough for props.conf).
EVAL_FUNCTIONS = frozenset(
    "abs case ceil cidrmatch coalesce floor if isnotnull isnull isnum json_array_to_mv json_extract json_keys len "
    "like lower match max min mvappend mvcount mvindex mvfind mvjoin now null nullif relative_time replace round "
    "searchmatch split strftime substr time tonumber tostring trim true false typeof upper urldecode".split()
)


class Expr:
    """A parsed eval expression: ('str'|'num', value) ('field', name)
    ('call', name, [args]) ('op', op, left, right) ('not', x) ('neg', x)."""

    def __init__(self, text: str) -> None:
        self.toks = tokens(text, EVAL_TOKEN)
        self.at = 0
        self.tree = self._or()
        if self.at != len(self.toks):
            raise SplError(f"unexpected {self.toks[self.at][1]!r} in eval expression {text!r}")

    @classmethod
    def from_tokens(cls, toks: List[Tuple[str, str]]) -> Tuple[Any, int]:
        parser = cls.__new__(cls)
        parser.toks, parser.at = toks, 0
        return parser._or(), parser.at

    def _peek(self, *values: str) -> bool:
        return self.at < len(self.toks) and self.toks[self.at][1] in values and self.toks[self.at][0] in ("op", "name")

    def _take(self, value: str) -> None:
        if not self._peek(value):
            found = self.toks[self.at][1] if self.at < len(self.toks) else "the end"
            raise SplError(f"expected {value!r}, found {found!r}")
        self.at += 1

    def _or(self):
        left = self._and()
        while self._peek("OR", "XOR"):
            op = self.toks[self.at][1]
            self.at += 1
            left = ("op", op, left, self._and())
        return left

    def _and(self):
        left = self._not()
        while self._peek("AND"):
            self.at += 1
            left = ("op", "AND", left, self._not())
        return left

    def _not(self):
        if self._peek("NOT"):
            self.at += 1
            return ("not", self._not())
        return self._compare()

    def _compare(self):
        left = self._add()
        if self._peek("==", "=", "!=", "<", ">", "<=", ">=", "LIKE"):
            op = self.toks[self.at][1]
            self.at += 1
            return ("op", "==" if op == "=" else op, left, self._add())
        return left

    def _add(self):
        left = self._mul()
        while self._peek("+", "-", "."):
            op = self.toks[self.at][1]
            self.at += 1
            left = ("op", op, left, self._mul())
        return left

    def _mul(self):
        left = self._unary()
        while self._peek("*", "/", "%"):
            op = self.toks[self.at][1]
            self.at += 1
            left = ("op", op, left, self._unary())
        return left

    def _unary(self):
        if self._peek("-"):
            self.at += 1
            return ("neg", self._unary())
        return self._primary()

    def _primary(self):
        if self.at >= len(self.toks):
            raise SplError("eval expression ends too early")
        kind, value = self.toks[self.at]
        self.at += 1
        if kind in ("str", "num"):
            return (kind, value)
        if kind == "field":
            return ("field", value)
        if kind == "name" and value not in ("AND", "OR", "NOT", "XOR", "LIKE"):
            if self._peek("("):
                self.at += 1
                args = []
                while not self._peek(")"):
                    args.append(self._or())
                    if not self._peek(")"):
                        self._take(",")
                self._take(")")
                if value not in EVAL_FUNCTIONS:
                    raise SplError(f"unknown eval function {value}()")
                return ("call", value, args)
            return ("field", value)
        if value == "(":
            inner = self._or()
            self._take(")")
            return inner
        raise SplError(f"unexpected {value!r} in eval expression")


def walk(tree) -> Iterable[tuple]:
    yield tree
    for part in tree[1:]:
        if isinstance(part, tuple):
            yield from walk(part)
        elif isinstance(part, list):
            for item in part:
                yield from walk(item)


def expr_fields(tree) -> Set[str]:
    return {node[1] for node in walk(tree) if node[0] == "field"}


def expr_comparisons(tree) -> Iterable[Tuple[str, str]]:
    """(field, literal) for every `field == "literal"` / `field != "literal"`."""
    for node in walk(tree):
        if node[0] == "op" and node[1] in ("==", "!="):
            for a, b in ((node[2], node[3]), (node[3], node[2])):
                if a[0] == "field" and b[0] == "str":
                    yield a[1], b[1]


class NotEvaluable(Exception):
    pass


def _pcre(pattern: str) -> re.Pattern:
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern))


def _null_in(function):
    """Splunk's eval functions give null for a null argument."""

    def wrapped(*values):
        return None if any(value is None for value in values) else function(*values)

    return wrapped


def _json_path(text: Any, path: str) -> Any:
    """json_extract(json, "a.b.c"): the value at a dotted path, as JSON text
    for objects and arrays, as a string for a string; null when absent or
    when the text is not JSON. Array steps ({n}) are not supported: no
    search here uses them, so one would fail its test."""
    if "{" in path:
        raise NotEvaluable(f"json_extract path {path!r}")
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _json_keys(text: Any) -> Any:
    """json_keys(object): a JSON array of its top-level keys (null for what
    is not a JSON object)."""
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    return json.dumps(list(value)) if isinstance(value, dict) else None


def _json_array_to_mv(text: Any) -> Any:
    """json_array_to_mv(array): a multivalue of its elements; an empty array
    gives null (a field with no value)."""
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    items = [item if isinstance(item, str) else json.dumps(item) for item in value]
    return None if not items else items[0] if len(items) == 1 else items


def _like(pattern: str) -> re.Pattern:
    """like()'s SQL pattern: % any run of characters, _ one character."""
    return re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern), re.S)


def _literal(replacement: Any) -> str:
    """replace()'s replacement, when it has no back-reference (the only kind
    props.conf uses)."""
    if "\\" in str(replacement):
        raise NotEvaluable(f"replace() with back-references: {replacement!r}")
    return str(replacement)


def _mvindex(values: Any, index: Any) -> Any:
    items = values if isinstance(values, list) else [values]
    position = int(index)
    return items[position] if -len(items) <= position < len(items) else None


def _split(text: Any, separator: Any) -> Any:
    parts = str(text).split(str(separator))
    return parts[0] if len(parts) == 1 else parts


# The eval functions evaluate() runs beyond if/case/coalesce/nullif/lower/
# upper/isnull/isnotnull/true/false/null, each with Splunk's semantics for the
# arguments props.conf gives them.
EVALUATORS = {
    "like": _null_in(lambda text, pattern: _like(str(pattern)).fullmatch(str(text)) is not None),
    "match": _null_in(lambda text, pattern: _pcre(str(pattern)).search(str(text)) is not None),
    "replace": _null_in(lambda text, pattern, to: _pcre(str(pattern)).sub(_literal(to), str(text))),
    "split": _null_in(_split),
    "mvindex": _null_in(_mvindex),
    "urldecode": _null_in(lambda text: urllib.parse.unquote(str(text))),
    "json_extract": _null_in(_json_path),
    "json_keys": _null_in(_json_keys),
    "json_array_to_mv": _null_in(_json_array_to_mv),
}


def evaluate(tree, event: Mapping[str, Any]) -> Any:
    """Splunk eval semantics on one event, for the functions props.conf uses:
    a missing field is null; a comparison with null is null; if() and case()
    take null as false."""
    kind = tree[0]
    if kind == "str":
        return tree[1]
    if kind == "num":
        return float(tree[1]) if "." in tree[1] else int(tree[1])
    if kind == "field":
        return event.get(tree[1])
    if kind == "not":
        value = evaluate(tree[1], event)
        return None if value is None else not value
    if kind == "op":
        op, left = tree[1], evaluate(tree[2], event)
        if op in ("AND", "OR"):
            right = evaluate(tree[3], event)
            if op == "AND":
                return False if False in (left, right) else None if None in (left, right) else True
            return True if True in (left, right) else None if None in (left, right) else False
        right = evaluate(tree[3], event)
        if left is None or right is None:
            return None
        if op in ("==", "!="):
            # A multivalue field compares true when any of its values does.
            lefts = left if isinstance(left, list) else [left]
            rights = right if isinstance(right, list) else [right]
            same = [str(a) == str(b) for a in lefts for b in rights]
            return any(same) if op == "==" else any(not hit for hit in same)
        if op == ".":
            return f"{left}{right}"
        raise NotEvaluable(op)
    if kind == "call":
        name, args = tree[1], tree[2]
        if name == "if":
            return evaluate(args[1] if evaluate(args[0], event) is True else args[2], event)
        if name == "case":
            for condition, value in zip(args[0::2], args[1::2]):
                if evaluate(condition, event) is True:
                    return evaluate(value, event)
            return None
        values = [evaluate(arg, event) for arg in args]
        if name == "coalesce":
            return next((value for value in values if value is not None), None)
        if name == "nullif":
            return None if values[0] is not None and str(values[0]) == str(values[1]) else values[0]
        if name in ("lower", "upper"):
            return None if values[0] is None else getattr(str(values[0]), name)()
        if name in ("isnull", "isnotnull"):
            return (values[0] is None) == (name == "isnull")
        if name in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[name]
        if name in EVALUATORS:
            return EVALUATORS[name](*values)
        raise NotEvaluable(name)
    raise NotEvaluable(kind)


# --- SPL: searches ---------------------------------------------------------------------


class Dataset:
    """What a search starts from: its fields and the values of enumerated ones."""

    def __init__(self, name: str, fields: Iterable[str], enums: Mapping[str, Set[str]], phrases=None) -> None:
        self.name = name
        self.fields = frozenset(fields) | SPLUNK_FIELDS
        self.enums = {key: set(values) for key, values in enums.items()}
        self.phrases = phrases  # real lines a quoted phrase must occur in (None: not checked)


class Analysis:
    def __init__(self) -> None:
        self.dataset: Optional[Dataset] = None
        self.fields: Set[str] = set()
        self.outputs: Set[str] = set()


STATS_FUNCTIONS = re.compile(
    r"^(count|c|dc|distinct_count|sum|avg|mean|min|max|range|median|mode|stdev|var|latest|earliest|first|last|"
    r"values|list|perc\d+|p\d+|latest_time|earliest_time|rate)$"
)


class Spl:
    """Reads searches against the datasets and knowledge objects it is given."""

    def __init__(
        self,
        events: Dataset,
        log: Dataset,
        macros: Mapping[str, str],
        eventtypes: Iterable[str],
        tags: Iterable[str],
        model_fields: Mapping[str, Set[str]],
        stream: Optional[Dataset] = None,
    ) -> None:
        """`events`: auth0_activity events; `stream`: auth0 events (the log
        stream's shape); `eventtypes`: names, or eventtypes.conf's stanzas
        (then a search by event type reads the sourcetypes its search names)."""
        self.events, self.log, self.stream = events, log, stream
        self.macros = dict(macros)
        self.eventtypes = set(eventtypes)
        self.eventtype_sourcetypes: Dict[str, Set[str]] = {}
        if isinstance(eventtypes, Mapping):
            for name, stanza in eventtypes.items():
                found = set(re.findall(r"sourcetype=([\w:]+)", stanza.get("search", "")))
                self.eventtype_sourcetypes[name] = found or {"auth0_activity"}
        self.tags = set(tags)
        self.model_fields = model_fields

    # -- entry points

    def analyze(self, search: str) -> Analysis:
        search = self.expand_macros(search)
        if "[" in re.sub(r'"(?:[^"\\]|\\.)*"', '""', search):
            raise SplError(f"subsearches are not supported: {search!r}")
        state = Analysis()
        segments = split_pipes(search)
        first = segments[0].strip()
        if first:
            self.search(first, state, first_segment=True)
        else:
            segments = segments[1:]
            name, _, rest = segments[0].strip().partition(" ")
            if name != "tstats":
                raise SplError(f"generating command {name!r} is not supported")
            self.tstats(rest, state)
        for segment in segments[1:]:
            name, _, rest = segment.strip().partition(" ")
            handler = getattr(self, "cmd_" + name, None)
            if handler is None:
                raise SplError(f"the analyzer does not know the command {name!r} (in {search!r})")
            handler(rest.strip(), state)
        state.outputs = set(state.fields)
        return state

    def expand_macros(self, search: str) -> str:
        def expand(match):
            name = match.group(1)
            if name not in self.macros:
                raise SplError(f"macro `{name}` is not defined in macros.conf")
            return self.expand_macros(self.macros[name])

        return re.sub(r"`([^`(]+)`", expand, search)

    # -- search mode

    def search(self, text: str, state: Analysis, first_segment: bool = False) -> None:
        terms = search_terms(text)
        if first_segment:
            state.dataset = self.dataset_of(terms, text)
            state.fields = set(state.dataset.fields)
        for kind, field, value in terms:
            if kind == "phrase":
                phrases = state.dataset.phrases if state.dataset else None
                if phrases is not None and not any(value.lower() in line.lower() for line in phrases):
                    raise SplError(f"{value!r} occurs in no line of ta_auth0.log from a real run")
                continue
            if kind != "compare":
                continue
            if field in ("earliest", "latest", "index", "source", "sourcetype", "host", "splunk_server"):
                continue
            if field == "eventtype":
                if value not in self.eventtypes:
                    raise SplError(f"eventtype={value} is not defined in eventtypes.conf")
                continue
            if field == "tag":
                if value not in self.tags:
                    raise SplError(f"tag={value} is not set in tags.conf")
                continue
            self.need(field, state, text)
            self.check_value(field, value, state, case_sensitive=False)

    def dataset_of(self, terms, text: str) -> Dataset:
        pairs = {(field, value.lower()) for kind, field, value in terms if kind == "compare"}
        # Explicit sourcetype terms say what a search reads; else its event types do.
        sourcetypes = {value for field, value in pairs if field == "sourcetype"} & {"auth0_activity", "auth0"}
        if not sourcetypes:
            for field, value in pairs:
                if field == "eventtype" and value.startswith("auth0_"):
                    sourcetypes |= self.eventtype_sourcetypes.get(value, {"auth0_activity"})
        if "auth0" in sourcetypes:
            if self.stream is None:
                raise SplError(f"no auth0 (log stream) events to check {text!r} against")
            if "auth0_activity" not in sourcetypes:
                return self.stream
            enums = {key: set(values) for key, values in self.events.enums.items()}
            for key, values in self.stream.enums.items():
                enums.setdefault(key, set()).update(values)
            return Dataset("auth0_activity and auth0 events", self.events.fields | self.stream.fields, enums)
        if sourcetypes:
            return self.events
        if ("index", "_internal") in pairs and any(
            field == "source" and fnmatch.fnmatch("/opt/splunk/var/log/splunk/ta_auth0.log", value)
            for field, value in pairs
        ):
            return self.log
        raise SplError(f"the search reads neither the add-on's events nor ta_auth0.log: {text!r}")

    def need(self, field: str, state: Analysis, where: str) -> None:
        if field not in state.fields:
            raise SplError(f"field {field!r} does not exist at this point of {where!r}")

    def check_value(self, field: str, value: str, state: Analysis, case_sensitive: bool) -> None:
        if state.dataset is None or field not in state.dataset.enums or "*" in value:
            return
        allowed = state.dataset.enums[field]
        if case_sensitive:
            ok = value in allowed
        else:
            ok = value.lower() in {item.lower() for item in allowed}
        if not ok:
            raise SplError(f"{field} never takes the value {value!r} (it takes {sorted(allowed)})")

    def expression(self, text_or_tree, state: Analysis, where: str):
        tree = Expr(text_or_tree).tree if isinstance(text_or_tree, str) else text_or_tree
        for field in expr_fields(tree):
            self.need(field, state, where)
        for field, value in expr_comparisons(tree):
            self.check_value(field, value, state, case_sensitive=True)
        phrases = state.dataset.phrases if state.dataset else None
        for node in walk(tree):
            if phrases is not None and node[0] == "call" and node[1] == "like" and node[2][1][0] == "str":
                pattern = re.escape(node[2][1][1]).replace("%", ".*").replace("_", ".")
                if not any(re.fullmatch(pattern, line.split(" ", 4)[-1], re.S) for line in phrases):
                    raise SplError(f"like(..., {node[2][1][1]!r}) matches no line of ta_auth0.log from a real run")
        return tree

    # -- transforming commands

    def aggregations(self, text: str, state: Analysis, allowed: Optional[Set[str]] = None) -> Tuple[Set[str], List]:
        """`count, dc(x) as y, count(eval(...)) as z by a, b` -> (outputs, by fields)."""
        toks = tokens(text, STATS_TOKEN)
        outputs: Set[str] = set()
        by: List[str] = []
        i = 0
        scope = allowed if allowed is not None else state.fields
        while i < len(toks):
            kind, value = toks[i]
            if value == ",":
                i += 1
                continue
            if kind == "name" and value.lower() == "by":
                by = [v for k, v in toks[i + 1 :] if v != ","]
                for field in by:
                    if field not in scope:
                        raise SplError(f"field {field!r} does not exist for `by` in {text!r}")
                break
            if kind != "name" or not STATS_FUNCTIONS.match(value):
                raise SplError(f"unknown aggregation {value!r} in {text!r}")
            name = value
            i += 1
            if i < len(toks) and toks[i][1] == "(":
                if toks[i + 1][1] == "eval" and toks[i + 2][1] == "(":
                    tree, used = Expr.from_tokens(toks[i + 3 :])
                    self.expression(tree, state, text)
                    i += 3 + used
                    if toks[i][1] != ")" or toks[i + 1][1] != ")":
                        raise SplError(f"unbalanced eval() in {text!r}")
                    i += 2
                    name = f"{value}(eval)"
                else:
                    field = toks[i + 1][1]
                    if field not in scope:
                        raise SplError(f"field {field!r} does not exist for {value}() in {text!r}")
                    if toks[i + 2][1] != ")":
                        raise SplError(f"expected ')' after {value}({field} in {text!r}")
                    name = f"{value}({field})"
                    i += 3
            if i < len(toks) and toks[i][0] == "name" and toks[i][1].lower() == "as":
                name = toks[i + 1][1]
                i += 2
            outputs.add(name)
        return outputs, by

    def cmd_stats(self, text: str, state: Analysis) -> None:
        outputs, by = self.aggregations(text, state)
        state.fields = outputs | set(by)

    def cmd_eventstats(self, text: str, state: Analysis) -> None:
        outputs, _by = self.aggregations(text, state)
        state.fields |= outputs

    cmd_streamstats = cmd_eventstats

    def cmd_timechart(self, text: str, state: Analysis) -> None:
        text = strip_options(text, ("span", "limit", "useother", "usenull", "bins", "minspan", "cont", "partial"))
        outputs, by = self.aggregations(text, state)
        if by:
            raise SplError(f"timechart ... by: columns named by data values; use count(eval(...)) as: {text!r}")
        state.fields = outputs | {"_time", "_span"}

    def tstats(self, text: str, state: Analysis) -> None:
        lower = " " + text
        model = re.search(r"\sfrom\s+datamodel\s*=\s*(\w+)(?:\.(\w+))?", lower)
        parts = re.split(r"\s(?=(?:where|by)\s)", lower.replace(model.group(0), " ") if model else lower)
        aggs, where, by = parts[0], "", ""
        for part in parts[1:]:
            if part.startswith("where "):
                where = part[len("where ") :]
            else:
                by = part
        if model:
            if model.group(1) not in self.model_fields:
                raise SplError(f"datamodel={model.group(1)} is not one the add-on maps to")
            scope = self.model_fields[model.group(1)]
            state.dataset = Dataset(model.group(1), scope, self.events.enums)
            state.fields = set(scope)
            if where:
                self.search(where, state)
        else:
            if not where:
                raise SplError(f"tstats without a where clause reads every index: {text!r}")
            state.dataset = self.dataset_of(search_terms(where), where)
            state.fields = set(INDEXED_FIELDS)
            self.search(where, state)
            scope = set(INDEXED_FIELDS)
        outputs, by_fields = self.aggregations(aggs + (" " + by if by else ""), state, allowed=set(scope))
        state.fields = outputs | set(by_fields)

    def cmd_geostats(self, text: str, state: Analysis) -> None:
        options = dict(re.findall(r"(\w+)=(\S+)", text))
        for key in options:
            if key not in ("latfield", "longfield", "globallimit", "locallimit", "binspanlat", "binspanlong"):
                raise SplError(f"unknown geostats option {key}")
        for field in (options.get("latfield", "lat"), options.get("longfield", "lon")):
            self.need(field, state, text)
        outputs, by = self.aggregations(re.sub(r"\w+=\S+", " ", text), state)
        bounds = {f"_geo_bounds_{side}" for side in ("east", "west", "north", "south")}
        state.fields = outputs | set(by) | {"latitude", "longitude", "geobin"} | bounds

    # -- streaming commands

    def cmd_search(self, text: str, state: Analysis) -> None:
        self.search(text, state)

    def cmd_where(self, text: str, state: Analysis) -> None:
        self.expression(text, state, text)

    def cmd_eval(self, text: str, state: Analysis) -> None:
        toks = tokens(text, EVAL_TOKEN)
        i = 0
        while i < len(toks):
            if toks[i][0] not in ("name", "field") or i + 1 >= len(toks) or toks[i + 1][1] != "=":
                raise SplError(f"expected `name=expression` in eval {text!r}")
            target = toks[i][1]
            tree, used = Expr.from_tokens(toks[i + 2 :])
            self.expression(tree, state, text)
            state.fields.add(target)
            i += 2 + used
            if i < len(toks):
                if toks[i][1] != ",":
                    raise SplError(f"unexpected {toks[i][1]!r} in eval {text!r}")
                i += 1

    cmd_fieldformat = cmd_eval

    def cmd_table(self, text: str, state: Analysis) -> None:
        names = [value for kind, value in tokens(text, SEARCH_TOKEN) if kind in ("word", "str")]
        kept = set()
        for name in names:
            matched = {field for field in state.fields if fnmatch.fnmatchcase(field, name)}
            if not matched:
                raise SplError(f"table: no field {name!r} exists here ({sorted(state.fields)})")
            kept |= matched
        state.fields = kept

    def cmd_fields(self, text: str, state: Analysis) -> None:
        toks = [value for kind, value in tokens(text, SEARCH_TOKEN) if kind in ("word", "str")]
        remove = toks[:1] == ["-"]
        names = toks[1:] if toks[:1] in (["-"], ["+"]) else toks
        for name in names:
            self.need(name, state, text)
        state.fields = state.fields - set(names) if remove else set(names) | {"_time"} & state.fields

    def cmd_rename(self, text: str, state: Analysis) -> None:
        words = [value for kind, value in tokens(text, SEARCH_TOKEN) if kind in ("word", "str")]
        if len(words) % 3 or any(word.lower() != "as" for word in words[1::3]):
            raise SplError(f"rename takes `old as new, ...`: {text!r}")
        for old, new in zip(words[0::3], words[2::3]):
            self.need(old, state, text)
            state.fields = (state.fields - {old}) | {new}

    def cmd_sort(self, text: str, state: Analysis) -> None:
        toks = tokens(text, SEARCH_TOKEN)
        if toks and toks[0][1].isdigit():
            toks = toks[1:]
        i = 0
        while i < len(toks):
            kind, value = toks[i]
            if value in ("-", "+", ","):
                i += 1
                continue
            if i + 1 < len(toks) and toks[i + 1][0] == "lp":
                if value not in ("num", "str", "ip", "auto"):
                    raise SplError(f"unknown sort function {value}()")
                self.need(toks[i + 2][1], state, text)
                i += 4
                continue
            self.need(value.lstrip("-+"), state, text)
            i += 1

    def cmd_head(self, text: str, state: Analysis) -> None:
        if text and not re.fullmatch(r"\d+|limit=\d+", text):
            raise SplError(f"head takes a count: {text!r}")

    cmd_tail = cmd_head

    def cmd_dedup(self, text: str, state: Analysis) -> None:
        words = [value for kind, value in tokens(text, SEARCH_TOKEN) if kind == "word" and value != ","]
        if words and words[0].isdigit():
            words = words[1:]
        if "sortby" in words:
            raise SplError("dedup ... sortby is not supported: sort first")
        for word in words:
            self.need(word, state, text)

    def cmd_iplocation(self, text: str, state: Analysis) -> None:
        options = dict(re.findall(r"(\w+)=(\S+)", text))
        for key in options:
            if key not in ("prefix", "allfields", "lang"):
                raise SplError(f"unknown iplocation option {key}")
        words = re.sub(r"\w+=\S+", " ", text).split()
        if len(words) != 1:
            raise SplError(f"iplocation takes one field: {text!r}")
        self.need(words[0], state, text)
        added = {"City", "Country", "Region", "lat", "lon"}
        if options.get("allfields", "false").lower() in ("true", "t", "1"):
            added |= {"Continent", "MetroCode", "Timezone"}
        state.fields |= {options.get("prefix", "") + name for name in added}


def split_pipes(search: str) -> List[str]:
    """Split on the `|` that are outside quotes."""
    parts, current, quote = [], [], None
    for char in search:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
        if char == "|":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def strip_options(text: str, names: Iterable[str]) -> str:
    pattern = r"^\s*(?:" + "|".join(names) + r")=\S+"
    while re.match(pattern, text):
        text = re.sub(pattern, "", text, count=1)
    return text


def search_terms(text: str) -> List[Tuple[str, str, str]]:
    """Search mode: ('compare', field, value) | ('phrase', '', text) | ('word', '', w)."""
    toks = tokens(text, SEARCH_TOKEN)
    terms = []
    i = 0
    while i < len(toks):
        kind, value = toks[i]
        if kind == "word" and i + 2 < len(toks) and toks[i + 1][0] == "op" and toks[i + 2][0] in ("word", "str"):
            terms.append(("compare", value, toks[i + 2][1]))
            i += 3
            continue
        if kind == "word" and i + 2 < len(toks) and toks[i + 1][1] == "IN" and toks[i + 2][0] == "lp":
            i += 3
            while toks[i][0] != "rp":
                if toks[i][0] in ("word", "str"):
                    terms.append(("compare", value, toks[i][1]))
                i += 1
            i += 1
            continue
        if kind == "op":
            raise SplError(f"a comparison without a field in {text!r}")
        if kind == "str":
            terms.append(("phrase", "", value))
        elif kind == "word" and value not in ("AND", "OR", "NOT"):
            terms.append(("word", "", value))
        i += 1
    return terms


def matches(search: str, event: Mapping[str, Any]) -> bool:
    """Whether an event matches an event type's search (or a data model's
    constraint): field=value and field!=value terms, NOT, OR, parentheses,
    implicit AND; values ignore case and take * as a wildcard (field=* means
    the field exists). A multivalue field matches when one of its values does."""
    toks = tokens(search, SEARCH_TOKEN)
    position = [0]

    def peek() -> Optional[Tuple[str, str]]:
        return toks[position[0]] if position[0] < len(toks) else None

    def any_of() -> bool:
        result = all_of()
        while peek() and peek()[1] == "OR":
            position[0] += 1
            result = all_of() or result
        return result

    def all_of() -> bool:
        result, seen = True, False
        while peek() and peek()[1] != "OR" and peek()[0] != "rp":
            result = term() and result
            seen = True
        if not seen:
            raise SplError(f"empty search clause in {search!r}")
        return result

    def term() -> bool:
        kind, value = toks[position[0]]
        position[0] += 1
        if value == "NOT":
            return not term()
        if kind == "lp":
            inner = any_of()
            if not peek() or peek()[0] != "rp":
                raise SplError(f"unbalanced parentheses in {search!r}")
            position[0] += 1
            return inner
        if kind != "word" or not peek() or peek()[1] not in ("=", "!=") or position[0] + 1 >= len(toks):
            raise SplError(f"search beyond field=value, NOT, OR and parentheses: {search!r}")
        op = toks[position[0]][1]
        wanted = toks[position[0] + 1][1]
        position[0] += 2
        actual = event.get("_meta", {}).get(value) if value in SEARCH_MODIFIERS else event.get(value)
        values = actual if isinstance(actual, list) else [] if actual is None else [actual]
        hit = any(fnmatch.fnmatch(str(item).lower(), wanted.lower()) for item in values)
        return hit if op == "=" else bool(values) and not hit

    result = any_of()
    if position[0] != len(toks):
        raise SplError(f"unexpected {toks[position[0]][1]!r} in {search!r}")
    return result


# --- search time: what Splunk does to one event before a search sees it ------------


def kv_json(value: Any, prefix: str = "", nulls: str = "null") -> Dict[str, Any]:
    """KV_MODE = json on one JSON object: a field per leaf, named by its path
    (data.details.error.message); array elements add `{}` to the name and make
    the field multivalue; true/false and numbers as their JSON text; JSON null
    as the text "null", or absent with nulls="absent" (Splunk's spelling of a
    null varies by version: the tests try both)."""
    out: Dict[str, Any] = {}

    def put(name: str, item: Any) -> None:
        if isinstance(item, dict):
            for key, inner in item.items():
                put(f"{name}.{key}" if name else key, inner)
        elif isinstance(item, list):
            for inner in item:
                put(name + "{}", inner)
        else:
            if item is None:
                if nulls == "absent":
                    return
                text = "null"
            elif isinstance(item, bool):
                text = "true" if item else "false"
            elif isinstance(item, str):
                text = item
            else:
                text = json.dumps(item)
            if name in out:
                existing = out[name] if isinstance(out[name], list) else [out[name]]
                out[name] = existing + [text]
            else:
                out[name] = text

    put(prefix, value)
    return out


class Lookup:
    """One LOOKUP-<class> setting: `table in AS field ... OUTPUT|OUTPUTNEW col [AS field] ...`."""

    def __init__(self, value: str) -> None:
        words = value.replace(",", " ").split()
        modes = [word for word in words if word in ("OUTPUT", "OUTPUTNEW")]
        if len(modes) != 1:
            raise SplError(f"a LOOKUP needs one OUTPUT or OUTPUTNEW here: {value!r}")
        self.mode = modes[0]
        at = words.index(self.mode)
        self.table = words[0]
        self.inputs = self._pairs(words[1:at], value)
        self.outputs = self._pairs(words[at + 1 :], value)
        if not self.inputs or not self.outputs:
            raise SplError(f"a LOOKUP needs input and output fields: {value!r}")

    @staticmethod
    def _pairs(words: List[str], value: str) -> List[Tuple[str, str]]:
        pairs, i = [], 0
        while i < len(words):
            if i + 1 < len(words) and words[i + 1].upper() == "AS":
                if i + 2 >= len(words):
                    raise SplError(f"AS without a name in {value!r}")
                pairs.append((words[i], words[i + 2]))
                i += 3
            else:
                pairs.append((words[i], words[i]))
                i += 1
        return pairs

    def apply(self, rows: List[Mapping[str, str]], fields: Dict[str, Any]) -> None:
        """Splunk's automatic lookup on one event, as far as the add-on relies on
        it: exact, case-sensitive match of every input (an event without the
        input field matches nothing); the first matching row; an empty cell
        adds no field. OUTPUTNEW does nothing where the output fields exist
        (the tests check the add-on's events have all or none of them)."""
        if self.mode == "OUTPUTNEW" and all(field in fields for _column, field in self.outputs):
            return
        keys = []
        for column, field in self.inputs:
            value = fields.get(field)
            if value is None or isinstance(value, list):
                return
            keys.append((column, value))
        for row in rows:
            if all(row.get(column) == value for column, value in keys):
                for column, field in self.outputs:
                    if column not in row:
                        raise SplError(f"lookup {self.table} has no column {column}")
                    if row[column] != "" and not (self.mode == "OUTPUTNEW" and field in fields):
                        fields[field] = row[column]
                return


def search_time(stanza: Mapping[str, str], event: Mapping[str, Any], tables: Mapping[str, List[Mapping[str, str]]]):
    """The fields of one event after props.conf's search-time settings, in
    Splunk's order: the extracted fields, then FIELDALIAS, then every EVAL
    (each from the fields before any EVAL: they run side by side), then the
    automatic lookups in ASCII order of their class names."""
    fields = dict(event)
    for key, value in stanza.items():
        if key.startswith("FIELDALIAS-"):
            words = value.split()
            for source, _as, target in zip(words[0::3], words[1::3], words[2::3]):
                if source in fields:
                    fields[target] = fields[source]
    evals = {key[len("EVAL-") :]: value for key, value in stanza.items() if key.startswith("EVAL-")}
    before = dict(fields)
    for name, text in evals.items():
        value = evaluate(Expr(text).tree, before)
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    for key in sorted(key for key in stanza if key.startswith("LOOKUP-")):
        lookup = Lookup(stanza[key])
        if lookup.table not in tables:
            raise SplError(f"{key}: no lookup table {lookup.table} in transforms.conf")
        lookup.apply(tables[lookup.table], fields)
    return fields
