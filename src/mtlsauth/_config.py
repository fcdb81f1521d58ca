"""Policy as data: ``load_config("mtls.toml")`` builds the Verifier and the middleware options.

One schema for TOML (stdlib ``tomllib``; ``tomli`` on Python 3.10) and YAML (when PyYAML is
installed), validated completely at load time. Every error is a ``ValueError`` naming the
file, the key and, where the format allows, the line::

    ValueError: mtls.toml: [routes.2].mode: must be one of mandatory, optional, off (line 14)

Array entries are numbered from 1, in file order. Relative paths in the file are relative
to the file's own folder. ``docs/config.md`` documents every key.

Why one module of this size: one schema, read top-down table by table; splitting it would
scatter the error messages that name each key.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from mtlsauth._forwarded._cert import ForwardedCert
from mtlsauth._guard import DENY_ONLY_ROUTE, Route, deny_only_route
from mtlsauth._policy._policy import Policy
from mtlsauth._policy._rules import _FIELDS as _POLICY_KEYWORDS
from mtlsauth._revocation._crl import CRLSet
from mtlsauth._revocation._ocsp import OCSPChecker
from mtlsauth._routes import Mode, _path_pattern, inert_route_policy, unreachable_route
from mtlsauth._truststore import TrustStore

if TYPE_CHECKING:
    from mtlsauth._verifier import Verifier

__all__ = ["Config", "config_from_mapping", "load_config"]

Key = tuple[str | int, ...]
_MODES: tuple[str, ...] = get_args(Mode)  # Mode is defined once, in _routes

DENY_FIELDS = ("deny_fingerprints", "deny_serials")
POLICY_FIELDS = tuple(f for f in _POLICY_KEYWORDS if f not in DENY_FIELDS)  # allow-lists
_POLICY_KEYS = (*POLICY_FIELDS, *DENY_FIELDS, "any_of", "rfc8705")
_TOP_KEYS = (
    "mode",
    "exempt_paths",
    "trust",
    "revocation",
    "forwarded",
    "policy",
    "routes",
    "cache",
)
_TRUST_KEYS = ("files", "directories", "pkcs12", "pinned", "intermediates", "max_depth",
               "clock_skew", "reload_interval")  # fmt: skip
# "mode" is the former name of "scope" ([revocation]) and of "failure" ([revocation.ocsp]).
_REVOCATION_KEYS = ("crls", "scope", "mode", "allow_missing", "grace", "reload_interval", "ocsp")
_OCSP_KEYS = ("responder_url", "timeout", "failure", "mode", "scope", "cache_size", "nonce",
              "trusted_responders", "max_age", "retry_after")  # fmt: skip
_ROUTE_KEYS = ("path", "regex", "methods", "mode", "policy")
_MAX_NESTING = 4


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, validated configuration.

    Attributes:
        path: The file it came from.
        mode: The default mode (``"mandatory"``, ``"optional"`` or ``"off"``).
        routes: Per-route rules, first match wins.
        exempt_paths: Paths never checked.
        policy: The Verifier's own allow-lists (``None``: any trusted certificate).

    Example::

        config = mtlsauth.load_config("mtls.toml")
        app.add_middleware(MTLSMiddleware, **config.middleware_kwargs())
    """

    path: Path
    mode: Literal["mandatory", "optional", "off"] = "mandatory"
    routes: tuple[Route, ...] = ()
    exempt_paths: tuple[str, ...] = ()
    policy: Policy | None = None
    _verifier: Verifier | None = field(default=None, repr=False)

    def verifier(self) -> Verifier:
        """The Verifier the file describes (built once at load time, so every caller shares
        its cache and reloads)."""
        if self._verifier is None:
            raise ValueError(f"{self.path}: loaded for its policy only; it builds no Verifier")
        return self._verifier

    def middleware_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any adapter: ``verifier``, ``mode``, ``routes``, ``exempt_paths``."""
        return {
            "verifier": self.verifier(),
            "mode": self.mode,
            "routes": self.routes,
            "exempt_paths": self.exempt_paths,
        }


class _Error(ValueError):
    def __init__(self, key: Key, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


_TABLE_ARRAYS = frozenset({"routes", "any_of", "pkcs12"})


def render_key(key: Key) -> str:
    """``("routes", 2, "mode")`` -> ``[routes.2].mode``; ``("trust", "files", 1)`` ->
    ``[trust].files[1]``; ``("routes", 2)`` -> ``[routes.2]``."""
    if not key:
        return "(top level)"
    if isinstance(key[-1], int) and len(key) >= 2:
        if key[-2] in _TABLE_ARRAYS:  # an element of an array of tables is a table
            return f"[{'.'.join(str(k) for k in key)}]"
        head, last = key[:-2], f"{key[-2]}[{key[-1]}]"
    else:
        head, last = key[:-1], str(key[-1])
    return f"[{'.'.join(str(k) for k in head)}].{last}" if head else last


# -- reading ---------------------------------------------------------------------------------
def _toml_loads(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 needs the tomli package
        try:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ValueError("reading TOML on Python 3.10 needs 'pip install tomli'") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None


_HEADER_END = re.compile(r"[\]#]")
_ASSIGN = re.compile(
    r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="
)


def _table_header(line: str) -> tuple[str, str] | None:
    """``("[" or "[[", the key text)`` of a table header line, else None.

    Read by hand: one pattern (``\\s*`` around a lazy run that can hold spaces too) tried
    every split of the spaces of a header that never closes, cubic work (a line of 4000
    spaces after a "[", say in a multi-line string, took half a minute).
    """
    rest = line.lstrip()
    if rest[:1] != "[":
        return None
    # "[[]" is the table "[" between single brackets: "[[" must hold a name before "]".
    bracket = "[[" if rest[:2] == "[[" and rest[2:3] != "]" else "["
    body = rest[len(bracket) :]
    end = _HEADER_END.search(body)
    if end is None or end.group() != "]" or end.start() == 0:
        return None
    content = body[: end.start()]
    tail = body[end.start() + 1 :]
    tail = (tail[1:] if tail[:1] == "]" else tail).lstrip()
    if tail and tail[0] != "#":
        return None
    # A name of spaces only is its last space, as the pattern's lazy group read it.
    return bracket, content.strip() or content[-1]


def _toml_key_parts(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text)]


def _toml_lines(text: str) -> dict[Key, int]:
    """Best-effort map from key path to line for top-level keys, tables and their keys."""
    lines: dict[Key, int] = {}
    counts: dict[Key, int] = {}
    table: Key = ()
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _table_header(line)
        if header is not None:
            bracket, name = header
            parts = _toml_key_parts(name)
            resolved: list[str | int] = []
            for i, part in enumerate(parts):
                resolved.append(part)
                prefix = tuple(resolved)
                if i == len(parts) - 1 and bracket == "[[":
                    lines.setdefault(prefix, lineno)  # the array itself, where it starts
                    counts[prefix] = counts.get(prefix, 0) + 1
                    resolved.append(counts[prefix])
                elif prefix in counts:  # a sub-table of the latest array element
                    resolved.append(counts[prefix])
            table = tuple(resolved)
            lines.setdefault(table, lineno)
            continue
        m = _ASSIGN.match(line)
        if m and not line.lstrip().startswith("#"):
            lines.setdefault((*table, *_toml_key_parts(m.group(1))), lineno)
    return lines


def _yaml_load(text: str) -> tuple[Any, dict[Key, int]]:
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ValueError("YAML configuration needs PyYAML: pip install 'mtlsauth[yaml]'") from None
    loader = _yaml_loader(yaml)
    try:
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    lines: dict[Key, int] = {}

    merge_tag = "tag:yaml.org,2002:merge"

    def merged(v: Any, into: set[int]) -> list[str]:
        """The keys a merge (``<<``) brings in, each source's in turn (nested merges
        included, each table once), for ``walk`` to refuse the ones given twice."""
        sources = v.value if isinstance(v, yaml.SequenceNode) else [v]
        out: list[str] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode) or id(source) in into:
                continue  # not a table: PyYAML refuses it while loading
            into.add(id(source))
            for k, sub in source.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                out += merged(sub, into) if k.tag == merge_tag else [k.value]
        return out

    # Each node once: an alias is the node of its anchor, so walking it again would only
    # repeat the checks, cost time exponential in the nesting of aliases of aliases, and
    # never end for an alias inside its own anchor (a RecursionError, not an error naming
    # the key). The data such an alias builds is refused by the schema (a table where a
    # list belongs, any_of nested too deeply).
    done: set[int] = set()

    def walk(n: Any, key: Key) -> None:
        lines.setdefault(key, n.start_mark.line + 1)
        if id(n) in done:
            return
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode):
            done.add(id(n))
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            merges: list[tuple[str, int]] = []
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag == merge_tag:
                    merges += [(name, k.start_mark.line + 1) for name in merged(v, {id(n)})]
                elif isinstance(k, yaml.ScalarNode):
                    # PyYAML keeps the last of two equal keys: a second "policy:" block would
                    # silently replace the first, deny-lists and all.
                    if k.value in seen:
                        where = render_key((*key, k.value))
                        raise ValueError(f"{where}: duplicate key (line {k.start_mark.line + 1})")
                    seen.add(k.value)
                    lines.setdefault((*key, k.value), k.start_mark.line + 1)
                    walk(v, (*key, k.value))
            # A key given here and by a merge, or by two merged tables: YAML keeps one value
            # and drops the other, as with a duplicate key: a merged deny-list replaced by
            # the table's own, or one of two merged deny-lists lost.
            names = [name for name, _line in merges]
            for i, (name, line) in enumerate(merges):
                if name in seen or name in names[:i]:
                    where = render_key((*key, name))
                    raise ValueError(
                        f"{where}: given by a merge (<<) and again (line {line}): YAML keeps "
                        "one value and drops the other; write the key once"
                    )
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value, start=1):
                walk(v, (*key, i))

    if node is not None:
        walk(node, ())
    return data, lines


# YAML 1.1 (PyYAML) reads 12:34:56 as a base-60 integer (45296), 010 as octal 8, 0b11 as 3
# and 1_0 as 10. Written in a deny-list, "12:34:56" is a serial's hex bytes, as openssl prints
# them: the file would deny a certificate nobody named. Only plain decimal and 0x hex are
# numbers here; every other spelling stays the text it is, for the key's own check to read
# (a serial "12:34:56" as hex bytes) or refuse (a depth "010").
_YAML_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+")


def _yaml_loader(yaml: Any) -> Any:
    class Loader(yaml.SafeLoader):  # type: ignore[misc,name-defined,unused-ignore]
        pass

    def integer(loader: Any, node: Any) -> Any:
        text = loader.construct_scalar(node)
        if _YAML_INT.fullmatch(text):
            return yaml.SafeLoader.construct_yaml_int(loader, node)
        return text

    def real(loader: Any, node: Any) -> Any:
        text = loader.construct_scalar(node)
        if ":" in text or "_" in text:  # base 60, or digits grouped with "_"
            return text
        return yaml.SafeLoader.construct_yaml_float(loader, node)

    Loader.add_constructor("tag:yaml.org,2002:int", integer)
    Loader.add_constructor("tag:yaml.org,2002:float", real)
    return Loader


def _line_for(lines: Mapping[Key, int], key: Key) -> int | None:
    for n in range(len(key), 0, -1):
        if key[:n] in lines:
            return lines[key[:n]]
    return None


# -- value checks ----------------------------------------------------------------------------
def _table(value: object, key: Key, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Error(key, f"must be a table, not {_kind(value)}")
    for k in value:
        if not isinstance(k, str) or k not in allowed:
            near = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(allowed)})"
            raise _Error((*key, str(k)), f"unknown key{hint}")
    return dict(value)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _str(value: object, key: Key) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Error(key, f"must be a non-empty string, not {_kind(value)}")
    return value


def _choice(value: object, key: Key, choices: Sequence[str]) -> str:
    if type(value) is bool:
        # YAML 1.1 reads an unquoted off/on/no/yes as a boolean.
        hint = ' (an unquoted off in YAML is false: write "off")' if "off" in choices else ""
        raise _Error(key, f"must be one of {', '.join(choices)}, not {_kind(value)}{hint}")
    if value not in choices:
        raise _Error(key, f"must be one of {', '.join(choices)}")
    return str(value)


def _bool(value: object, key: Key) -> bool:
    if not isinstance(value, bool):
        raise _Error(key, f"must be true or false, not {_kind(value)}")
    return value


_MAX_NUMBER = 1e9  # seconds (about 31 years), sizes: anything larger is a typo


def _number(value: object, key: Key, *, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Error(key, f"must be a number >= {minimum:g}, not {_kind(value)}")
    if not value >= minimum:
        raise _Error(key, f"must be a number >= {minimum:g}")
    if not value <= _MAX_NUMBER:  # also inf and nan, which TOML and YAML can spell
        raise _Error(key, f"must be a number <= {_MAX_NUMBER:g}")
    return float(value)


def _positive(value: object, key: Key) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _Error(key, f"must be a number > 0, not {_kind(value)}")
    return _number(value, key)


def _certificates(path: Path) -> list[Any]:
    """Every certificate in a PEM file (or one DER certificate)."""
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError(f"{path}: not a PEM or DER certificate") from None


def _read_bytes(path: Path) -> bytes:
    """A file's bytes; ``ValueError`` naming it (a folder, no permission) otherwise."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _int(value: object, key: Key, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Error(key, f"must be an integer >= {minimum}, not {_kind(value)}")
    if value < minimum:
        raise _Error(key, f"must be an integer >= {minimum}")
    if value > _MAX_NUMBER:
        raise _Error(key, f"must be an integer <= {_MAX_NUMBER:.0f}")
    return value


def _list(value: object, key: Key, item: Callable[[object, Key], Any] = _str) -> list[Any]:
    """A list (a single string is accepted as a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise _Error(key, f"must be a list, not {_kind(value)}")
    if not value:
        raise _Error(key, "must not be empty (leave the key out instead)")
    return [item(v, (*key, i)) for i, v in enumerate(value, start=1)]


def _reload_interval(value: object, key: Key) -> float | None:
    if value is False:
        return None
    return _number(value, key, minimum=1)


# -- sections --------------------------------------------------------------------------------
class _Builder:
    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, value: object, key: Key, *, must_exist: bool = True) -> Path:
        text = _str(value, key)
        if "-----BEGIN" in text:
            raise _Error(
                key, "PEM text where a file path belongs: save it to a file and give its path"
            )
        p = Path(os.path.expanduser(text))
        p = p if p.is_absolute() else self.base / p
        try:
            exists = p.exists()
        except OSError as exc:  # a name too long, a component that is not a folder...
            raise _Error(key, f"{p}: cannot be read: {exc.strerror or exc}") from None
        if must_exist and not exists:
            raise _Error(key, f"{p}: no such file or directory")
        return p

    def paths(self, value: object, key: Key) -> list[Path]:
        return _list(value, key, lambda v, k: self.path(v, k))

    def policy(
        self, value: object, key: Key, depth: int = 0, inherited: dict[str, list[Any]] | None = None
    ) -> Policy:
        """A policy table; ``inherited`` deny-lists come from an enclosing ``any_of`` table."""

        table = _table(value, key, _POLICY_KEYS)
        if not table:
            raise _Error(key, "is empty: leave it out for no constraint")
        deny = {k: _list(table[k], (*key, k), _serial if k == "deny_serials" else _str)
                for k in DENY_FIELDS if k in table}  # fmt: skip
        allow = {k: _list(table[k], (*key, k)) for k in POLICY_FIELDS if k in table}
        for k, v in (allow | deny).items():
            try:  # build each field alone first, so an error names its key
                Policy(**{k: v})
            except (ValueError, TypeError) as exc:
                raise _Error((*key, k), str(exc)) from None
        if depth and deny and not allow and "any_of" not in table:
            raise _Error(
                key,
                "has only deny-lists, and an alternative without allow-lists admits every "
                "certificate it does not deny; put the deny-lists next to any_of (they apply "
                "to every alternative)",
            )
        for k, v in (inherited or {}).items():
            deny[k] = [*deny.get(k, []), *v]
        if "rfc8705" in table:
            if len(table) > 1 or inherited:
                raise _Error(
                    (*key, "rfc8705"),
                    "cannot be combined with other keys, deny-lists included, in one table",
                )
            meta = table["rfc8705"]
            if not isinstance(meta, Mapping):
                raise _Error((*key, "rfc8705"), "must be a table of RFC 8705 client metadata")
            try:
                return Policy.from_rfc8705(meta)
            except (ValueError, TypeError) as exc:
                raise _Error((*key, "rfc8705"), str(exc)) from None
        if "any_of" in table:
            if allow:
                raise _Error(
                    (*key, "any_of"),
                    "cannot be combined with allow-list keys in the same table "
                    "(put them into one of the alternatives)",
                )
            if depth >= _MAX_NESTING:
                raise _Error((*key, "any_of"), "nested too deeply")
            alts = table["any_of"]
            if not isinstance(alts, list) or not alts:
                raise _Error((*key, "any_of"), "must be a non-empty list of policy tables")
            # Deny-lists go into every alternative: a deny-only alternative would admit anyone.
            return Policy.any_of(
                *(
                    self.policy(v, (*key, "any_of", i), depth + 1, deny)
                    for i, v in enumerate(alts, 1)
                )
            )
        return Policy(**allow, **deny)

    def trust(self, value: object, key: Key) -> dict[str, Any]:
        t = _table(value, key, _TRUST_KEYS)
        ri: float | None = 30.0
        if "reload_interval" in t:
            ri = _reload_interval(t["reload_interval"], (*key, "reload_interval"))
        stores: list[TrustStore] = []
        for kind in ("files", "directories"):
            paths = self.paths(t[kind], (*key, kind)) if kind in t else []
            for i, p in enumerate(paths, 1):
                load = TrustStore.from_pem_file if kind == "files" else TrustStore.from_directory
                stores.append(_attempt((*key, kind, i), load, p, reload_interval=ri))
        p12s = t.get("pkcs12", [])
        for i, entry in enumerate(p12s if isinstance(p12s, list) else [p12s], 1):
            k = (*key, "pkcs12", i)
            e = _table(entry, k, ("path", "password", "password_env"))
            if "path" not in e:
                raise _Error(k, "needs a path")
            path = self.path(e["path"], (*k, "path"))
            password = _str(e["password"], (*k, "password")) if "password" in e else None
            if "password_env" in e:
                env = _str(e["password_env"], (*k, "password_env"))
                if env not in os.environ:
                    raise _Error((*k, "password_env"), f"environment variable {env} is not set")
                password = os.environ[env]
            stores.append(
                _attempt(k, TrustStore.from_pkcs12, path, password=password, reload_interval=ri)
            )
        out: dict[str, Any] = {}
        if stores:
            out["trust_store"] = _union(stores)
        if "pinned" in t:
            k = (*key, "pinned")
            pins = [
                _attempt((*k, i), TrustStore.from_pem_file, p, reload_interval=ri)
                for i, p in enumerate(self.paths(t["pinned"], k), 1)
            ]
            out["pinned"] = _union(pins)
        if "intermediates" in t:
            k = (*key, "intermediates")
            out["intermediates"] = [
                _attempt((*k, i), _read_bytes, f)
                for i, f in enumerate(self.paths(t["intermediates"], k), 1)
            ]
        if "max_depth" in t:
            out["max_depth"] = _int(t["max_depth"], (*key, "max_depth"))
        if "clock_skew" in t:
            out["clock_skew"] = _number(t["clock_skew"], (*key, "clock_skew"))
        return out

    def revocation(self, value: object, key: Key) -> Any:
        t = _table(value, key, _REVOCATION_KEYS)
        checkers: list[Any] = []
        crl_keys = ("scope", "mode", "allow_missing", "grace", "reload_interval")
        if "crls" in t:
            kwargs: dict[str, Any] = {}
            for name in ("scope", "mode"):  # one of them, or both agreeing
                if name in t:
                    kwargs["scope"] = _choice(t[name], (*key, name), ("chain", "leaf"))
            if "scope" in t and "mode" in t and t["scope"] != t["mode"]:
                raise _Error((*key, "mode"), "disagrees with scope (mode is its former name)")
            if "allow_missing" in t:
                kwargs["allow_missing"] = _bool(t["allow_missing"], (*key, "allow_missing"))
            if "grace" in t:
                kwargs["grace"] = timedelta(seconds=_number(t["grace"], (*key, "grace")))
            if "reload_interval" in t:
                kwargs["reload_interval"] = _reload_interval(
                    t["reload_interval"], (*key, "reload_interval")
                )
            paths = self.paths(t["crls"], (*key, "crls"))
            try:
                checkers.append(CRLSet.from_paths(*paths, **kwargs))
            except (ValueError, TypeError) as exc:
                raise _Error((*key, "crls"), str(exc)) from None
        else:
            for k in crl_keys:
                if k in t:
                    raise _Error((*key, k), "applies to CRLs: add crls = [...]")
        if "ocsp" in t:
            checkers.append(self.ocsp(t["ocsp"], (*key, "ocsp")))
        if not checkers:
            raise _Error(key, "give crls = [...] and/or an [revocation.ocsp] table")
        return checkers[0] if len(checkers) == 1 else tuple(checkers)

    def ocsp(self, value: object, key: Key) -> Any:
        if value is True:
            value = {}
        t = _table(value, key, _OCSP_KEYS)
        kwargs: dict[str, Any] = {}
        if "responder_url" in t:
            kwargs["responder_url"] = _str(t["responder_url"], (*key, "responder_url"))
        if "timeout" in t:
            kwargs["timeout"] = _positive(t["timeout"], (*key, "timeout"))
        for name in ("failure", "mode"):  # mode is the former name of failure
            if name in t:
                kwargs["failure"] = _choice(t[name], (*key, name), ("hard-fail", "soft-fail"))
        if "failure" in t and "mode" in t and t["failure"] != t["mode"]:
            raise _Error((*key, "mode"), "disagrees with failure (mode is its former name)")
        if "scope" in t:
            kwargs["scope"] = _choice(t["scope"], (*key, "scope"), ("leaf", "chain"))
        if "cache_size" in t:
            kwargs["cache_size"] = _int(t["cache_size"], (*key, "cache_size"))
        if "nonce" in t:
            kwargs["nonce"] = _bool(t["nonce"], (*key, "nonce"))
        if "max_age" in t:
            kwargs["max_age"] = timedelta(seconds=_positive(t["max_age"], (*key, "max_age")))
        if "retry_after" in t:
            kwargs["retry_after"] = _number(t["retry_after"], (*key, "retry_after"))
        if "trusted_responders" in t:
            k = (*key, "trusted_responders")
            kwargs["trusted_responders"] = [
                cert
                for i, p in enumerate(self.paths(t["trusted_responders"], k), 1)
                for cert in _attempt((*k, i), _certificates, p)
            ]
        try:
            return OCSPChecker(**kwargs)
        except (ValueError, TypeError) as exc:
            raise _Error(key, str(exc)) from None

    def forwarded(self, value: object, key: Key) -> Any:
        params = [p for p in _keyword_params(ForwardedCert) if p != "trusted_proxies"]
        t = _table(value, key, ("preset", "trusted_proxies", *params))
        if "trusted_proxies" not in t:
            raise _Error(key, "needs trusted_proxies: the addresses of the proxies allowed to "
                              "send the certificate header")  # fmt: skip
        proxies = _list(t.pop("trusted_proxies"), (*key, "trusted_proxies"))
        preset = _str(t.pop("preset"), (*key, "preset")) if "preset" in t else None
        for k in ("header", "encoding", "on_untrusted", "identity_format"):
            if k in t:
                _str(t[k], (*key, k))
        if "chain_header" in t:
            t["chain_header"] = _list(t["chain_header"], (*key, "chain_header"))
        try:
            if preset is not None:
                return ForwardedCert.preset(preset, trusted_proxies=proxies, **t)
            if "header" not in t or "encoding" not in t:
                raise _Error(key, "give a preset, or both header and encoding")
            return ForwardedCert(trusted_proxies=proxies, **t)
        except _Error:
            raise
        except (ValueError, TypeError) as exc:
            bad = next((k for k in (*t, "trusted_proxies", "preset") if k in str(exc)), None)
            raise _Error((*key, bad) if bad else key, str(exc)) from None

    def routes(self, value: object, key: Key) -> tuple[Route, ...]:
        if not isinstance(value, list):
            raise _Error(key, "must be a list of tables ([[routes]])")
        out: list[Route] = []
        for i, item in enumerate(value, start=1):
            k = (*key, i)
            r = _table(item, k, _ROUTE_KEYS)
            if ("path" in r) == ("regex" in r):
                raise _Error(k, "give exactly one of path or regex")
            pattern: Any
            if "path" in r:
                pattern = _str(r["path"], (*k, "path"))
            else:
                try:
                    pattern = re.compile(_str(r["regex"], (*k, "regex")))
                except re.error as exc:
                    raise _Error((*k, "regex"), f"not a valid regular expression: {exc}") from None
            methods = (
                frozenset(m.upper() for m in _list(r["methods"], (*k, "methods")))
                if "methods" in r
                else None
            )
            mode = _choice(r["mode"], (*k, "mode"), _MODES) if "mode" in r else None
            policy = self.policy(r["policy"], (*k, "policy")) if "policy" in r else None
            try:
                out.append(Route(pattern, methods=methods, mode=mode, policy=policy))  # type: ignore[arg-type]
            except (ValueError, TypeError) as exc:
                where = "path" if "path" in r else "regex"
                if policy is not None and mode == "off":
                    where = "policy"
                raise _Error((*k, where), str(exc)) from None
        return tuple(out)


def _attempt(key: Key, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a constructor; its ValueError/TypeError becomes an error naming ``key``."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise _Error(key, str(exc)) from None


def _union(stores: list[Any]) -> Any:
    combined = stores[0]
    for s in stores[1:]:
        combined = combined | s
    return combined


def _serial(value: object, key: Key) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Error(key, "must be an integer or a hex string ('0x1f2e' or '1f:2e')")
    return value


def _keyword_params(cls: Callable[..., Any]) -> tuple[str, ...]:
    sig = inspect.signature(cls)
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def _build(data: object, path: Path, *, policy_only: bool) -> Config:
    if isinstance(data, Mapping):
        # `organizations = [...]` written above any table: the allow-list belongs to [policy]
        stray = next((k for k in data if k in _POLICY_KEYS and k not in _TOP_KEYS), None)
        if stray is not None:
            raise _Error(
                (str(stray),),
                "unknown key at the top level: it is a policy key, write it under [policy]",
            )
    top = _table(data, (), _TOP_KEYS)
    b = _Builder(path.parent)
    policy = b.policy(top["policy"], ("policy",)) if "policy" in top else None
    if policy_only:
        return Config(path=path, policy=policy)
    mode = _choice(top["mode"], ("mode",), _MODES) if "mode" in top else "mandatory"
    exempt = tuple(_list(top["exempt_paths"], ("exempt_paths",))) if "exempt_paths" in top else ()
    routes = b.routes(top["routes"], ("routes",)) if "routes" in top else ()
    for i, route in enumerate(routes, 1):
        if deny_only_route(policy, route.policy):
            raise _Error(("routes", i, "policy"), DENY_ONLY_ROUTE)
    try:  # a malformed exempt path is reported below, by the Guard, under its own key
        patterns = [_path_pattern(p, "exempt path") for p in exempt]
    except (ValueError, TypeError):
        patterns = []
    unreachable = unreachable_route(routes, patterns)
    if unreachable is not None:
        raise _Error(("routes", unreachable[0] + 1), unreachable[1])
    inert = inert_route_policy(routes, mode)
    if inert is not None:
        raise _Error(("routes", inert[0] + 1, "policy"), inert[1])
    kwargs: dict[str, Any] = {"policy": policy}
    if "trust" not in top:
        raise _Error(
            ("trust",),
            "missing: name the CAs that issue client certificates ([trust] files = [...])",
        )
    kwargs |= b.trust(top["trust"], ("trust",))
    if "trust_store" not in kwargs and "pinned" not in kwargs:
        raise _Error(("trust",), "give files, directories, pkcs12 or pinned")
    if "revocation" in top:
        kwargs["revocation"] = b.revocation(top["revocation"], ("revocation",))
    if "forwarded" in top:
        kwargs["forwarded"] = b.forwarded(top["forwarded"], ("forwarded",))
    if "cache" in top:
        c = _table(top["cache"], ("cache",), ("size", "ttl"))
        if "size" in c:
            kwargs["cache_size"] = _int(c["size"], ("cache", "size"))
        if "ttl" in c:
            kwargs["cache_ttl"] = _number(c["ttl"], ("cache", "ttl"), minimum=1)
    from mtlsauth._guard import Guard
    from mtlsauth._verifier import Verifier

    try:
        verifier = Verifier(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _Error(("trust",), str(exc)) from None
    try:  # the adapters' own validation, so a bad exempt path fails here, not at start-up
        Guard(verifier=verifier, mode=mode, routes=routes, exempt_paths=exempt)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise _Error(("exempt_paths",), str(exc)) from None
    return Config(
        path=path,
        mode=mode,  # type: ignore[arg-type]
        routes=routes,
        exempt_paths=exempt,
        policy=policy,
        _verifier=verifier,
    )


def _load(path: str | os.PathLike[str], *, policy_only: bool = False) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data, lines = _toml_loads(text), _toml_lines(text)
        elif suffix in (".yaml", ".yml"):
            data, lines = _yaml_load(text)
        else:
            raise ValueError("use a .toml, .yaml or .yml file")
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    try:
        return _build(data if data is not None else {}, p, policy_only=policy_only)
    except _Error as exc:
        line = _line_for(lines, exc.key) or (1 if not exc.key else None)
        where = f" (line {line})" if line else ""
        raise ValueError(f"{p}: {render_key(exc.key)}: {exc.message}{where}") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a TOML or YAML configuration (chosen by the file's suffix).

    Args:
        path: ``*.toml``, or ``*.yaml``/``*.yml`` (needs PyYAML).

    Returns:
        A ``Config``: ``config.verifier()`` and ``config.middleware_kwargs()``.

    Raises:
        ValueError: naming the file, the key and (where known) the line, for anything that
            is missing, unknown, mistyped or does not load (a CA file that does not parse,
            a malformed CIDR, an empty allow-list...).

    Example::

        config = load_config("mtls.toml")
        app.add_middleware(MTLSMiddleware, **config.middleware_kwargs())
    """
    return _load(path)


def load_policy(path: str | os.PathLike[str]) -> Policy | None:
    """Only the ``[policy]`` table of a configuration file (used by ``mtlsauth verify``)."""
    return _load(path, policy_only=True).policy


def config_from_mapping(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    name: str = "configuration",
) -> Config:
    """Build a ``Config`` from an already-parsed mapping with the file schema.

    This is how frameworks that keep configuration in code (Django's ``settings.MTLSAUTH``)
    share the TOML/YAML schema. Relative paths are relative to ``base_dir`` (default: the
    current directory).

    Raises:
        ValueError: naming ``name`` and the key, as ``load_config`` does.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{name}: must be a mapping (a dict), not {_kind(data)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        return _build(dict(data), base / name, policy_only=False)
    except _Error as exc:
        raise ValueError(f"{name}: {render_key(exc.key)}: {exc.message}") from None
