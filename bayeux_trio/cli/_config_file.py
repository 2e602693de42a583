"""``bayeux serve --config FILE``: serve options and access control from a TOML file.

The file is checked whole before anything starts, so a typo cannot leave a
server running without the rule the operator meant to write: every key must
be known, every option's value goes through the flag's own ``type=`` and
``choices=`` (one meaning for ``history = ["/a/*=10"]`` and ``--history
/a/*=10``), and the access sections are built into
:class:`~bayeux_trio.access.AccessSettings`, whose checks run here. Every
refusal is a :class:`ConfigError` naming the file and the key
(``bayeux.toml: access.jwt.leeway: ...``). docs/configuration.md is the
file's reference.
"""

from __future__ import annotations

import argparse
import difflib
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from bayeux_core import HistoryPolicy, is_valid_pattern
from bayeux_trio.access import AccessSettings, HookSettings, JwtSettings, TokenFileSettings

if TYPE_CHECKING:
    from bayeux_core import ChannelRule

__all__ = ["SECTION_KEYS", "ConfigError", "ConfigFile", "file_options", "load_config_file"]

#: top-level tables that are not serve options
SECTIONS = ("access", "channels", "hooks")
HOOK_KINDS = ("handshake", "subscribe", "publish")


class ConfigError(ValueError):
    """A config file that cannot be used; the message is ``FILE: key: what is wrong``."""


def file_options(serve: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of ``bayeux serve`` a file may set, by key (the flag without ``--``).

    Raises TypeError for an option of a kind the file cannot express, so a
    new flag of that kind is noticed (tests walk this).
    """
    options: dict[str, argparse.Action] = {}
    # argparse has no public list of a parser's actions.
    for action in serve._actions:
        if action.help == argparse.SUPPRESS or action.dest in ("help", "config"):
            continue
        flags = [flag for flag in action.option_strings if flag.startswith("--")]
        if not flags:
            raise TypeError(f"{action.dest}: a config file sets options, not positionals")
        kinds = (
            argparse._StoreAction,
            argparse._StoreTrueAction,
            argparse.BooleanOptionalAction,
            argparse._AppendAction,
        )
        if not isinstance(action, kinds):
            raise TypeError(f"{flags[0]}: a config file cannot set a {type(action).__name__}")
        options[flags[0].removeprefix("--")] = action
    return options


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file, checked.

    Attributes:
        name: the file as named on the command line (errors start with it).
        options: serve options by argparse ``dest``, as the flag would give them.
        keys: the key that set each of ``options``.
        access: the ``[access]``, ``[[channels]]`` and ``[hooks.*]`` sections.
        history, presence: what ``[[channels]]`` adds to ``--history`` and
            ``--presence``, in file order.
        files: the files the access sections name, by key path.
    """

    name: str
    options: Mapping[str, object]
    keys: Mapping[str, str]
    access: AccessSettings
    history: tuple[tuple[str, HistoryPolicy], ...]
    presence: tuple[str, ...]
    files: Mapping[str, Path]

    def merge(self, args: argparse.Namespace, given: Collection[str]) -> dict[str, str]:
        """Set on ``args`` each option the command line did not give (``given``: dests).

        A repeatable option given on the command line replaces the file's
        list; ``[[channels]]``' history and presence are added either way, before
        the option's own list (so for one pattern, the option wins). Returns
        ``{dest: "FILE: key"}`` for the options taken from the file.
        """
        taken: dict[str, str] = {}
        for dest, value in self.options.items():
            if dest not in given:
                setattr(args, dest, list(value) if isinstance(value, list) else value)
                taken[dest] = f"{self.name}: {self.keys[dest]}"
        if self.history:
            args.history = [*self.history, *args.history]
        if self.presence:
            args.presence = [*self.presence, *(p for p in args.presence if p not in self.presence)]
        return taken

    def check_files(self) -> None:
        """Raise ConfigError if a file the access sections name cannot be read."""
        for key, path in self.files.items():
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ConfigError(
                    f"{self.name}: {key}: cannot read {path} ({exc.strerror or exc})"
                ) from None

    def explain(self, message: str) -> str:
        """An error about the access settings (bayeux_trio.access's checks), with the
        file and, where the field names one key, its path: ``secret_file: ...`` ->
        ``bayeux.toml: access.jwt.secret-file: ...``."""
        head, sep, rest = message.partition(": ")
        key = _ACCESS_FIELDS.get(head) if sep else None
        return f"{self.name}: {key}: {rest}" if key else f"{self.name}: {message}"

    def summary(self) -> str:
        """One line: what the file sets up."""
        access = self.access
        parts = [f"{len(self.options)} serve option{_s(len(self.options))}"]
        if not access.active:
            parts.append("no access control (anyone may do anything, as in Faye)")
        else:
            parts.append(f"{len(access.rules)} channel rule{_s(len(access.rules))}")
            parts.append(f"handshake: {access.handshake}")
            sources = []
            if access.tokens is not None:
                sources.append("tokens file")
            if access.jwt is not None:
                sources.append(f"JWT ({', '.join(access.jwt.accepted_algorithms)})")
            if access.backend_secret_file is not None:
                sources.append("backend secret")
            parts.append(f"auth: {', '.join(sources) or 'none'}")
            parts.append(f"hooks: {', '.join(access.hooks) or 'none'}")
        if self.presence or self.history:
            parts.append(
                f"[[channels]] add {len(self.presence)} presence and "
                f"{len(self.history)} history pattern{_s(len(self.history))}"
            )
        return "; ".join(parts)


def load_config_file(path: Path, serve: argparse.ArgumentParser) -> ConfigFile:
    """Read and check ``path``; ``serve`` is the ``bayeux serve`` parser.

    Relative paths in the file are relative to its directory. Raises
    :class:`ConfigError`.
    """
    name = str(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {_where_in_text(str(exc))}") from None
    return _Reader(name, path.parent, file_options(serve)).read(data)


def _where_in_text(message: str) -> str:
    """tomllib's ``Invalid value (at line 3, column 7)`` -> ``line 3, column 7: Invalid value``."""
    found = re.fullmatch(r"(?s)(.*?)\s*\(at (line \d+, column \d+|end of document)\)", message)
    return f"{found[2]}: {found[1]}" if found else message


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _show(value: object) -> str:
    """A TOML value as an error message shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Refused(Exception):
    """A value refused; whoever knows the key turns it into a ConfigError."""


# ------------------------------------------------------------------ values
# Each takes the TOML value and the config file's directory.

_Convert = Callable[[Any, Path], Any]


def _string(value: object, base: Path) -> str:
    if not isinstance(value, str):
        raise _Refused(f"want a string, not {_show(value)}")
    return value


def _strings(value: object, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Refused(f"want a list of strings, not {_show(value)}")
    return tuple(value)


def _number(value: object, base: Path) -> float:
    # An int stays an int: errors then show 900, as written, not 900.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"want a number, not {_show(value)}")
    return value


def _integer(value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused(f"want an integer, not {_show(value)}")
    return value


def _boolean(value: object, base: Path) -> bool:
    if not isinstance(value, bool):
        raise _Refused(f"want true or false, not {_show(value)}")
    return value


def _path(value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise _Refused(f"want a file name, not {_show(value)}")
    return base / value


def _who(value: object, base: Path) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _Refused(f"want a keyword such as 'anyone' or a list of users, not {_show(value)}")


def _history_bounds(value: object, base: Path) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    raise _Refused(f'want SIZE[:TTL] (say "100:300" or 100), not {_show(value)}')


def _headers(value: object, base: Path) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Refused(
            f'want a table of strings (say {{ Authorization = "..." }}), not {_show(value)}'
        )
    return tuple(value.items())


_ACCESS: dict[str, _Convert] = {
    "handshake": _string,
    "error": _string,
    "backend-secret-file": _path,
}
_TOKENS: dict[str, _Convert] = {"file": _path, "field": _string}
_JWT: dict[str, _Convert] = {
    "secret-file": _path,
    "public-key-file": _path,
    "jwks-file": _path,
    "algorithms": _strings,
    "field": _string,
    "channel-field": _string,
    "leeway": _number,
    "audience": _string,
    "issuer": _string,
    "info-claim": _string,
    "channels-claim": _string,
}
_HOOK: dict[str, _Convert] = {
    "url": _string,
    "timeout": _number,
    "max-in-flight": _integer,
    "on-error": _string,
    "headers": _headers,
}
#: pattern, subscribe, publish, error, sender: ChannelRule's; the rest add options
_CHANNEL: dict[str, _Convert] = {
    "pattern": _string,
    "subscribe": _who,
    "publish": _who,
    "error": _string,
    "sender": _string,
    "presence": _boolean,
    "history": _history_bounds,
}


#: the keys of each section, for docs and tests
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "access": (*_ACCESS, "tokens", "jwt"),
    "access.tokens": tuple(_TOKENS),
    "access.jwt": tuple(_JWT),
    "channels": tuple(_CHANNEL),
    **{f"hooks.{kind}": tuple(_HOOK) for kind in HOOK_KINDS},
}


def _fields_of(sections: Mapping[str, Mapping[str, _Convert]]) -> dict[str, str]:
    """Settings field -> key path, for the fields only one section has."""
    found: dict[str, list[str]] = {}
    for where, schema in sections.items():
        for key in schema:
            found.setdefault(key.replace("-", "_"), []).append(_join(where, key))
    return {name: paths[0] for name, paths in found.items() if len(paths) == 1}


_ACCESS_FIELDS = _fields_of({"access": _ACCESS, "access.tokens": _TOKENS, "access.jwt": _JWT})


class _Reader:
    """One pass over a parsed file; knows its name and directory for messages and paths."""

    def __init__(self, name: str, base: Path, options: dict[str, argparse.Action]) -> None:
        self.name = name
        self.base = base
        self.options = options
        #: the files the access sections name, by key path
        self.files: dict[str, Path] = {}

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name}: {key}: {message}")

    def read(self, data: dict[str, Any]) -> ConfigFile:
        self.known("", data, [*self.options, *SECTIONS])
        options: dict[str, object] = {}
        keys: dict[str, str] = {}
        for key, value in data.items():
            if key in SECTIONS:
                continue
            action = self.options[key]
            options[action.dest] = self.option(key, action, value)
            keys[action.dest] = key
        rules, history, presence = self.channels(data.get("channels", []))
        hooks = self.hooks(data.get("hooks", {}))
        access = self.access(self.table("access", data.get("access", {})), rules, hooks)
        return ConfigFile(
            name=self.name,
            options=options,
            keys=keys,
            access=access,
            history=tuple(history),
            presence=tuple(dict.fromkeys(presence)),
            files=dict(self.files),
        )

    # ----------------------------------------------------- serve options

    def option(self, key: str, action: argparse.Action, value: object) -> object:
        """A value as the flag would give it, or a ConfigError naming ``key``."""
        if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
            if not isinstance(value, bool):
                raise self.error(key, f"want true or false, not {_show(value)}")
            return value
        if isinstance(action, argparse._AppendAction):
            if not isinstance(value, list):
                raise self.error(key, f'want a list (say {key} = ["..."]), not {_show(value)}')
            return [self.one(f"{key}[{n}]", action, item) for n, item in enumerate(value)]
        return self.one(key, action, value)

    def one(self, key: str, action: argparse.Action, value: object) -> object:
        kind = action.type
        try:
            if kind is int:
                result: object = _integer(value, self.base)
            elif kind is float:
                result = float(_number(value, self.base))
            elif isinstance(kind, type) and issubclass(kind, PurePath):
                result = _path(value, self.base)
            elif kind is None:
                result = _string(value, self.base)
            else:
                convert: Any = kind  # the flag's type=: a callable taking the string
                try:
                    result = convert(_string(value, self.base))
                except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                    raise _Refused(str(exc)) from None
        except _Refused as exc:
            raise self.error(key, str(exc)) from None
        if action.choices is not None and result not in action.choices:
            wanted = ", ".join(repr(choice) for choice in action.choices)
            raise self.error(key, f"want one of {wanted}, not {_show(value)}")
        return result

    # ----------------------------------------------------------- sections

    def known(self, where: str, table: Mapping[str, object], keys: Iterable[str]) -> None:
        """Refuse a key not in ``keys``, suggesting the closest."""
        keys = list(keys)
        for key in table:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.error(_join(where, key), f"unknown key{hint}")

    def table(self, where: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, f"want a table ([{where}]), not {_show(value)}")
        return value

    def fields(
        self,
        where: str,
        table: Mapping[str, object],
        schema: Mapping[str, _Convert],
        *,
        required: Iterable[str] = (),
        tables: Iterable[str] = (),
    ) -> dict[str, Any]:
        """``table``'s keys as keyword arguments: dashes become underscores."""
        self.known(where, table, [*schema, *tables])
        for key in required:
            if key not in table:
                raise self.error(_join(where, key), "missing (this table needs it)")
        kwargs: dict[str, Any] = {}
        for key, convert in schema.items():
            if key in table:
                try:
                    value = convert(table[key], self.base)
                except _Refused as exc:
                    raise self.error(_join(where, key), str(exc)) from None
                if convert is _path:
                    self.files[_join(where, key)] = value
                kwargs[key.replace("-", "_")] = value
        return kwargs

    def build(self, where: str, make: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """``make(**kwargs)``, its ValueError naming the key path."""
        try:
            return make(**kwargs)
        except ValueError as exc:
            raise ConfigError(f"{self.name}: {_rename(where, str(exc))}") from None

    def access(
        self,
        table: dict[str, Any],
        rules: list[ChannelRule],
        hooks: dict[str, HookSettings],
    ) -> AccessSettings:
        kwargs = self.fields("access", table, _ACCESS, tables=("tokens", "jwt"))
        if "tokens" in table:
            where = "access.tokens"
            fields = self.fields(
                where, self.table(where, table["tokens"]), _TOKENS, required=["file"]
            )
            kwargs["tokens"] = self.build(where, TokenFileSettings, fields)
        if "jwt" in table:
            where = "access.jwt"
            fields = self.fields(where, self.table(where, table["jwt"]), _JWT)
            kwargs["jwt"] = self.build(where, JwtSettings, fields)
        settings: AccessSettings = self.build(
            "access", AccessSettings, {**kwargs, "rules": tuple(rules), "hooks": hooks}
        )
        return settings

    def hooks(self, value: object) -> dict[str, HookSettings]:
        table = self.table("hooks", value)
        self.known("hooks", table, HOOK_KINDS)
        hooks: dict[str, HookSettings] = {}
        for kind, hook in table.items():
            where = f"hooks.{kind}"
            fields = self.fields(where, self.table(where, hook), _HOOK, required=["url"])
            hooks[kind] = self.build(where, HookSettings, fields)
        return hooks

    def channels(
        self, value: object
    ) -> tuple[list[ChannelRule], list[tuple[str, HistoryPolicy]], list[str]]:
        if not isinstance(value, list):
            raise self.error("channels", f"want [[channels]] tables, not {_show(value)}")
        if value:
            # Imported here: only a file with rules needs it.
            from bayeux_core import ChannelRule
        rules: list[ChannelRule] = []
        history: list[tuple[str, HistoryPolicy]] = []
        presence: list[str] = []
        for index, item in enumerate(value):
            where = f"channels[{index}]"
            kwargs = self.fields(where, self.table(where, item), _CHANNEL, required=["pattern"])
            wants_presence = kwargs.pop("presence", False)
            bounds = kwargs.pop("history", None)
            rules.append(self.build(where, ChannelRule, kwargs))
            pattern = kwargs["pattern"]
            if wants_presence:
                presence.append(self.added(f"{where}.presence", "presence", pattern, pattern))
            if bounds is not None:
                history.append(
                    self.added(f"{where}.history", "history", pattern, f"{pattern}={bounds}")
                )
        return rules, history, presence

    def added(self, key: str, option: str, pattern: str, text: str) -> Any:
        """What ``--OPTION TEXT`` gives, for a [[channels]] entry's presence or history."""
        if not is_valid_pattern(pattern):
            raise self.error(
                key,
                f"needs a Bayeux channel or glob (only a trailing * or **, no {{var}}), "
                f"not {pattern!r}",
            )
        convert = self.options[option].type
        assert callable(convert)
        try:
            return convert(text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None


def _rename(where: str, message: str) -> str:
    """A settings class's ``leeway: ...`` -> ``access.jwt.leeway: ...``.

    Several fields (``a, b: ...``) are named within the table: ``access.jwt: a, b: ...``.
    """
    head, sep, rest = message.partition(": ")
    names = [name.strip() for name in head.split(",")]
    if not sep or not all(name.isidentifier() for name in names):
        return f"{where}: {message}"
    keys = [name.replace("_", "-") for name in names]
    if len(keys) == 1:
        return f"{_join(where, keys[0])}: {rest}"
    return f"{where}: {', '.join(keys)}: {rest}"
