"""Listener rules of an Application Load Balancer: conditions, actions, priorities.

A listener evaluates its rules from the lowest priority number to the highest and runs the
first rule whose conditions all match; when none matches, the listener's default action
runs. Within one condition, the values are alternatives (any one may match); several
conditions on one rule must all match. This keeps ALB's names and limits as the
Elastic Load Balancing API documents them (``CreateRule``, ``RuleCondition``, ``Action``):

* conditions ``path-pattern`` (case-sensitive, wildcards ``*`` and ``?``, the path only,
  not the query), ``host-header`` (case-insensitive, wildcards), ``http-header`` (header
  name case-insensitive, values case-insensitive with wildcards), ``query-string``
  (``Key``/``Value`` pairs, case-insensitive, wildcards, the key optional),
  ``http-request-method`` (case-sensitive, exact) and ``source-ip`` (CIDR blocks);
* priorities 1..50000, unique within a listener;
* actions ``forward`` (one target group, or up to 5 weighted target groups with weights
  0..999), ``fixed-response`` (status 2XX, 4XX or 5XX; content types ``text/plain``,
  ``text/css``, ``text/html``, ``application/javascript``, ``application/json``; body up to
  1024 bytes) and ``redirect`` (``HTTP_301``/``HTTP_302``; the components protocol, host,
  port, path and query, each defaulting to the request's own through the ``#{protocol}``,
  ``#{host}``, ``#{port}``, ``#{path}`` and ``#{query}`` placeholders).

Rules are built from plain dicts in the API's own shape (``{"Field": "path-pattern",
"PathPatternConfig": {"Values": ["/api/*"]}}``, ``{"Type": "forward", "TargetGroupArn":
"web"}``) with :func:`rule_from_dict` and :func:`action_from_dict`, or from the dataclasses
directly. Each kind of condition is a small class registered under its ``Field`` name, so a
new one is a new class, not an edit of a switch.

AWS documentation followed: "Listener rules for your Application Load Balancer"
(condition types, wildcards, case sensitivity, limits), "Rule action types" (fixed
responses, redirects and their placeholders, weighted forwarding), Elastic Load Balancing
API reference (``RuleCondition``, ``FixedResponseActionConfig``, ``RedirectActionConfig``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl

MIN_PRIORITY, MAX_PRIORITY = 1, 50_000
MAX_CONDITION_VALUE_LENGTH = 128  # path-pattern, host-header, header and query values
MAX_FIXED_RESPONSE_BODY = 1024
FIXED_RESPONSE_CONTENT_TYPES = ("text/plain", "text/css", "text/html",
                                "application/javascript", "application/json")
MAX_WEIGHTED_TARGET_GROUPS = 5
MAX_TARGET_GROUP_WEIGHT = 999
HTTP_METHOD = re.compile(r"^[A-Z_-]{1,40}$")


class RoutedGroup(Protocol):
    """What the rules need of a target group: its name (the proxy needs more)."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class RequestView:
    """The parts of a request that conditions look at."""

    method: str
    path: str  # without the query
    query: str  # raw, without "?"
    host: str  # Host header without the port, as sent
    headers: Mapping[str, list[str]]  # lower-case name -> values
    source_ip: str

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """ALB's wildcards: ``*`` any run of characters, ``?`` exactly one; nothing else."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _check_values(where: str, values: Sequence[str], *, max_len: int = MAX_CONDITION_VALUE_LENGTH
                  ) -> None:
    if not values:
        raise ValueError(f"{where}: give at least one value")
    for v in values:
        if not isinstance(v, str) or not v:
            raise ValueError(f"{where}: values are non-empty strings (got {v!r})")
        if len(v) > max_len:
            raise ValueError(f"{where}: a value is at most {max_len} characters "
                             f"(got {len(v)}: {v[:40]!r}...)")


class Condition:
    """One ``RuleCondition``: true when any of its values matches the request."""

    field_name: ClassVar[str]

    def matches(self, request: RequestView) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


CONDITIONS: dict[str, Callable[[Mapping[str, Any], str], Condition]] = {}


def _register(name: str) -> Callable[[type[Any]], type[Any]]:
    def deco(cls: type[Any]) -> type[Any]:
        cls.field_name = name
        CONDITIONS[name] = cls.from_dict
        return cls
    return deco


def _values(d: Mapping[str, Any], config_key: str, where: str) -> list[Any]:
    config = d.get(config_key)
    if config is not None:
        values = config.get("Values") if isinstance(config, Mapping) else None
    else:
        values = d.get("Values")
    if not isinstance(values, list):
        raise ValueError(f"{where}: give the values as {config_key}={{'Values': [...]}}")
    return values


@_register("path-pattern")
@dataclass(frozen=True)
class PathPattern(Condition):
    values: tuple[str, ...]
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_values("path-pattern", self.values)
        object.__setattr__(self, "_patterns",
                           tuple(_wildcard(v, ignore_case=False) for v in self.values))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> PathPattern:
        return cls(tuple(_values(d, "PathPatternConfig", where)))

    def matches(self, request: RequestView) -> bool:
        return any(p.fullmatch(request.path) for p in self._patterns)

    def describe(self) -> str:
        return f"path-pattern {list(self.values)}"


@_register("host-header")
@dataclass(frozen=True)
class HostHeader(Condition):
    values: tuple[str, ...]
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_values("host-header", self.values)
        object.__setattr__(self, "_patterns",
                           tuple(_wildcard(v, ignore_case=True) for v in self.values))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> HostHeader:
        return cls(tuple(_values(d, "HostHeaderConfig", where)))

    def matches(self, request: RequestView) -> bool:
        return any(p.fullmatch(request.host) for p in self._patterns)

    def describe(self) -> str:
        return f"host-header {list(self.values)}"


@_register("http-header")
@dataclass(frozen=True)
class HttpHeader(Condition):
    header_name: str
    values: tuple[str, ...]
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,40}", self.header_name or ""):
            raise ValueError(f"http-header: {self.header_name!r} is not a header name (a token "
                             "of at most 40 characters, e.g. 'User-Agent')")
        if self.header_name.lower() == "host":
            raise ValueError("http-header: use a host-header condition for Host")
        _check_values("http-header", self.values)
        object.__setattr__(self, "_patterns",
                           tuple(_wildcard(v, ignore_case=True) for v in self.values))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> HttpHeader:
        config = d.get("HttpHeaderConfig")
        if not isinstance(config, Mapping):
            raise ValueError(f"{where}: give HttpHeaderConfig={{'HttpHeaderName': ..., "
                             "'Values': [...]}}")
        values = config.get("Values")
        if not isinstance(values, list):
            raise ValueError(f"{where}: HttpHeaderConfig needs a list of Values")
        return cls(str(config.get("HttpHeaderName", "")), tuple(values))

    def matches(self, request: RequestView) -> bool:
        sent = request.headers.get(self.header_name.lower(), ())
        return any(p.fullmatch(v) for v in sent for p in self._patterns)

    def describe(self) -> str:
        return f"http-header {self.header_name} {list(self.values)}"


@_register("query-string")
@dataclass(frozen=True)
class QueryString(Condition):
    values: tuple[tuple[str | None, str], ...]  # (key or None: any key, value)
    _patterns: tuple[tuple[re.Pattern[str] | None, re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("query-string: give at least one {'Key': ..., 'Value': ...} pair")
        compiled = []
        for key, value in self.values:
            if not value or len(value) > MAX_CONDITION_VALUE_LENGTH or (
                    key is not None and (not key or len(key) > MAX_CONDITION_VALUE_LENGTH)):
                raise ValueError(f"query-string: key {key!r} / value {value!r}: a value is "
                                 f"required, keys and values are 1..128 characters")
            compiled.append((None if key is None else _wildcard(key, ignore_case=True),
                             _wildcard(value, ignore_case=True)))
        object.__setattr__(self, "_patterns", tuple(compiled))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> QueryString:
        pairs = []
        for item in _values(d, "QueryStringConfig", where):
            if not isinstance(item, Mapping) or "Value" not in item:
                raise ValueError(f"{where}: query-string values are {{'Key': k, 'Value': v}} "
                                 f"(Key optional), got {item!r}")
            key = item.get("Key")
            pairs.append((None if key is None else str(key), str(item["Value"])))
        return cls(tuple(pairs))

    def matches(self, request: RequestView) -> bool:
        if not request.query:
            return False
        sent = request.query_pairs()
        return any((kp is None or kp.fullmatch(k)) and vp.fullmatch(v)
                   for k, v in sent for kp, vp in self._patterns)

    def describe(self) -> str:
        return f"query-string {list(self.values)}"


@_register("http-request-method")
@dataclass(frozen=True)
class HttpRequestMethod(Condition):
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_values("http-request-method", self.values, max_len=40)
        for v in self.values:
            if not HTTP_METHOD.fullmatch(v):
                raise ValueError(f"http-request-method: {v!r} is not a method name; methods "
                                 "are case-sensitive upper case (A-Z, '_' or '-'), e.g. 'GET'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> HttpRequestMethod:
        return cls(tuple(_values(d, "HttpRequestMethodConfig", where)))

    def matches(self, request: RequestView) -> bool:
        return request.method in self.values

    def describe(self) -> str:
        return f"http-request-method {list(self.values)}"


@_register("source-ip")
@dataclass(frozen=True)
class SourceIp(Condition):
    values: tuple[str, ...]
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_values("source-ip", self.values)
        nets = []
        for v in self.values:
            try:
                nets.append(ipaddress.ip_network(v, strict=True))
            except ValueError as exc:
                raise ValueError(f"source-ip: {v!r} is not a CIDR block ({exc}); write e.g. "
                                 "'192.0.2.0/24' or '2001:db8::/32'") from None
        object.__setattr__(self, "_networks", tuple(nets))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> SourceIp:
        return cls(tuple(_values(d, "SourceIpConfig", where)))

    def matches(self, request: RequestView) -> bool:
        try:
            ip = ipaddress.ip_address(request.source_ip)
        except ValueError:
            return False
        return any(ip in n for n in self._networks)

    def describe(self) -> str:
        return f"source-ip {list(self.values)}"


# --- actions ---------------------------------------------------------------------------------


@dataclass
class Forward:
    """``forward``: to one target group or weighted target groups.

    With several groups, requests are shared in proportion to the weights by smooth weighted
    round robin (deterministic, unlike a random draw, and as even over any window)."""

    target_groups: list[tuple[Any, int]]  # (target group, weight)
    type: ClassVar[str] = "forward"
    _current: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.target_groups:
            raise ValueError("forward: give at least one target group")
        if len(self.target_groups) > MAX_WEIGHTED_TARGET_GROUPS:
            raise ValueError(f"forward: at most {MAX_WEIGHTED_TARGET_GROUPS} target groups "
                             f"(got {len(self.target_groups)})")
        for tg, weight in self.target_groups:
            if not 0 <= weight <= MAX_TARGET_GROUP_WEIGHT:
                raise ValueError(f"forward: target group {tg.name!r} has weight {weight}; "
                                 f"weights are 0..{MAX_TARGET_GROUP_WEIGHT}")
        if len(self.target_groups) > 1 and not any(w for _, w in self.target_groups):
            raise ValueError("forward: at least one target group needs a weight above 0")
        self._current = [0] * len(self.target_groups)

    @classmethod
    def to(cls, target_group: Any) -> Forward:
        return cls([(target_group, 1)])

    def choose(self) -> Any:
        """The target group for the next request."""
        groups = self.target_groups
        if len(groups) == 1:
            return groups[0][0]
        total = 0
        best = 0
        for i, (_, weight) in enumerate(groups):
            self._current[i] += weight
            total += weight
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= total
        return groups[best][0]


@dataclass(frozen=True)
class FixedResponse:
    """``fixed-response``: the balancer answers itself."""

    status_code: int
    content_type: str = "text/plain"
    message_body: str = ""
    type: ClassVar[str] = "fixed-response"

    def __post_init__(self) -> None:
        if not (200 <= self.status_code <= 299 or 400 <= self.status_code <= 599):
            raise ValueError(f"fixed-response: status code {self.status_code} is not allowed; "
                             "use 2XX, 4XX or 5XX (a redirect action gives 3XX)")
        if self.content_type not in FIXED_RESPONSE_CONTENT_TYPES:
            raise ValueError(f"fixed-response: content type {self.content_type!r} is not one "
                             f"of {', '.join(FIXED_RESPONSE_CONTENT_TYPES)}")
        size = len(self.message_body.encode())
        if size > MAX_FIXED_RESPONSE_BODY:
            raise ValueError(f"fixed-response: the message body is {size} bytes; at most "
                             f"{MAX_FIXED_RESPONSE_BODY} are allowed")


_PLACEHOLDER = re.compile(r"#\{(protocol|host|port|path|query)\}")


@dataclass(frozen=True)
class Redirect:
    """``redirect``: answer 301/302 with a Location built from the request's components."""

    protocol: str = "#{protocol}"
    host: str = "#{host}"
    port: str = "#{port}"
    path: str = "/#{path}"
    query: str = "#{query}"
    status_code: str = "HTTP_301"
    type: ClassVar[str] = "redirect"

    def __post_init__(self) -> None:
        if self.status_code not in ("HTTP_301", "HTTP_302"):
            raise ValueError(f"redirect: status code {self.status_code!r}; use 'HTTP_301' "
                             "(permanent) or 'HTTP_302' (temporary)")
        if self.protocol not in ("HTTP", "HTTPS", "#{protocol}"):
            raise ValueError(f"redirect: protocol {self.protocol!r}; use 'HTTP', 'HTTPS' or "
                             "'#{protocol}'")
        if self.port != "#{port}" and not (self.port.isdigit() and 1 <= int(self.port) <= 65535):
            raise ValueError(f"redirect: port {self.port!r}; use 1..65535 or '#{{port}}'")
        if not self.path.startswith("/"):
            raise ValueError(f"redirect: path {self.path!r} must start with '/'")
        if self.query.startswith("?"):
            raise ValueError(f"redirect: query {self.query!r} must not start with '?'")
        for part in (self.host, self.path, self.query):
            for name in re.findall(r"#\{([^}]*)\}", part):
                if name not in ("protocol", "host", "port", "path", "query"):
                    raise ValueError(f"redirect: unknown placeholder #{{{name}}}; use "
                                     "#{protocol}, #{host}, #{port}, #{path} or #{query}")
        if (self.protocol, self.host, self.port, self.path, self.query) == (
                "#{protocol}", "#{host}", "#{port}", "/#{path}", "#{query}"):
            raise ValueError("redirect: the target would be the request's own URL (a loop); "
                             "change at least one of protocol, host, port, path or query")

    @property
    def http_status(self) -> int:
        return 301 if self.status_code == "HTTP_301" else 302

    def location(self, *, protocol: str, host: str, port: int, path: str, query: str) -> str:
        """The Location for a request (``path`` without its leading "/", as ALB's
        ``#{path}``)."""
        values = {"protocol": protocol.lower(), "host": host, "port": str(port),
                  "path": path.removeprefix("/"), "query": query}

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        proto = fill(self.protocol).lower()
        port_text = fill(self.port)
        default_port = {"http": "80", "https": "443"}.get(proto)
        netloc = fill(self.host) + ("" if port_text == default_port else f":{port_text}")
        q = fill(self.query)
        return f"{proto}://{netloc}{fill(self.path)}" + (f"?{q}" if q else "")


Action = Forward | FixedResponse | Redirect


@dataclass
class Rule:
    """A listener rule: its priority, its conditions (all must match) and its action."""

    priority: int
    conditions: list[Condition]
    action: Action

    def __post_init__(self) -> None:
        if not isinstance(self.priority, int) or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"rule priority {self.priority!r}: priorities are whole numbers "
                             f"{MIN_PRIORITY}..{MAX_PRIORITY} (lower is evaluated first)")
        if not self.conditions:
            raise ValueError(f"rule {self.priority}: give at least one condition (the "
                             "listener's default action covers requests that match none)")
        kinds = [c.field_name for c in self.conditions if c.field_name != "http-header"
                 and c.field_name != "query-string"]
        if len(kinds) != len(set(kinds)):
            raise ValueError(f"rule {self.priority}: each of path-pattern, host-header, "
                             "http-request-method and source-ip may appear once; put several "
                             "values in one condition instead")

    def matches(self, request: RequestView) -> bool:
        return all(c.matches(request) for c in self.conditions)


class RuleSet:
    """A listener's rules in evaluation order, and its default action."""

    def __init__(self, rules: Iterable[Rule], default_action: Action) -> None:
        ordered = sorted(rules, key=lambda r: r.priority)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a.priority == b.priority:
                raise ValueError(f"two rules have priority {a.priority}; priorities are unique "
                                 "per listener: renumber one of them")
        self.rules = ordered
        self.default_action = default_action

    def route(self, request: RequestView) -> tuple[str, Action]:
        """The matched rule's priority ("0" for the default action, as ALB logs it) and its
        action."""
        for rule in self.rules:
            if rule.matches(request):
                return str(rule.priority), rule.action
        return "0", self.default_action

    def target_groups(self) -> list[Any]:
        """Every target group an action forwards to (each once)."""
        seen: dict[int, Any] = {}
        for action in [r.action for r in self.rules] + [self.default_action]:
            if isinstance(action, Forward):
                for tg, _ in action.target_groups:
                    seen.setdefault(id(tg), tg)
        return list(seen.values())


# --- from plain dicts ------------------------------------------------------------------------


def condition_from_dict(d: Mapping[str, Any], where: str = "condition") -> Condition:
    """A ``RuleCondition`` in the API's shape: ``{"Field": ..., "<Kind>Config": {...}}``."""
    name = d.get("Field")
    factory = CONDITIONS.get(str(name))
    if factory is None:
        raise ValueError(f"{where}: Field {name!r} is not a condition; use one of "
                         f"{', '.join(CONDITIONS)}")
    return factory(d, f"{where} ({name})")


def action_from_dict(d: Mapping[str, Any], target_groups: Mapping[str, Any],
                     where: str = "action") -> Action:
    """An ``Action`` in the API's shape; target groups are named (``TargetGroupArn`` or
    ``TargetGroupName``) and looked up in ``target_groups``."""
    kind = d.get("Type")

    def group(ref: Any) -> Any:
        if ref not in target_groups:
            raise ValueError(f"{where}: no target group named {ref!r}; known: "
                             f"{', '.join(sorted(target_groups)) or 'none'}")
        return target_groups[ref]

    if kind == "forward":
        config = d.get("ForwardConfig")
        if isinstance(config, Mapping):
            pairs = [(group(t.get("TargetGroupArn", t.get("TargetGroupName"))),
                      int(t.get("Weight", 1))) for t in config.get("TargetGroups", [])]
            return Forward(pairs)
        ref = d.get("TargetGroupArn", d.get("TargetGroupName"))
        if ref is None:
            raise ValueError(f"{where}: a forward action needs TargetGroupArn or ForwardConfig")
        return Forward.to(group(ref))
    if kind == "fixed-response":
        config = d.get("FixedResponseConfig") or {}
        return FixedResponse(int(config.get("StatusCode", 0)),
                             str(config.get("ContentType", "text/plain")),
                             str(config.get("MessageBody", "")))
    if kind == "redirect":
        config = dict(d.get("RedirectConfig") or {})
        keys = {"Protocol": "protocol", "Host": "host", "Port": "port", "Path": "path",
                "Query": "query", "StatusCode": "status_code"}
        unknown = set(config) - set(keys)
        if unknown:
            raise ValueError(f"{where}: unknown RedirectConfig keys {sorted(unknown)}; use "
                             f"{', '.join(keys)}")
        return Redirect(**{keys[k]: str(v) for k, v in config.items()})
    raise ValueError(f"{where}: Type {kind!r} is not an action; use forward, fixed-response "
                     "or redirect")


def rule_from_dict(d: Mapping[str, Any], target_groups: Mapping[str, Any]) -> Rule:
    """A rule as ``CreateRule`` takes it: ``Priority``, ``Conditions``, ``Actions`` (one)."""
    priority = d.get("Priority")
    where = f"rule {priority}"
    actions = d.get("Actions")
    if not isinstance(actions, list) or len(actions) != 1:
        raise ValueError(f"{where}: give exactly one action in Actions")
    conditions = d.get("Conditions")
    if not isinstance(conditions, list):
        raise ValueError(f"{where}: give Conditions as a list")
    try:
        return Rule(int(priority) if isinstance(priority, (int, str)) and str(priority).isdigit()
                    else priority,  # type: ignore[arg-type]
                    [condition_from_dict(c, where) for c in conditions],
                    action_from_dict(actions[0], target_groups, where))
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}"
                         ) from None
