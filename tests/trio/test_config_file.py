"""``bayeux serve --config FILE`` and ``bayeux check-config FILE`` (issue 17).

Every serve flag is settable from the file (the parser is walked, so a new
flag the file cannot set fails here), the command line wins per option, and
every bad file is refused with the file and the key named.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_core import ChannelRule, HistoryPolicy
from bayeux_trio.access import AccessSettings, HookSettings, JwtSettings, TokenFileSettings
from bayeux_trio.cli import _main as _cli
from bayeux_trio.cli._config_file import (
    SECTION_KEYS,
    ConfigError,
    ConfigFile,
    file_options,
    load_config_file,
)
from tests._support.processes import until_serving

from .helpers import fail_after, free_port, handshake

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
BAYEUX = [sys.executable, "-m", "bayeux_trio"]

#: a valid, non-default file value and what the option then holds, for the
#: options whose ``type=`` is the CLI's own parser
SAMPLES: dict[str, tuple[object, object]] = {
    "history": (["/a/*=5:10"], [("/a/*", HistoryPolicy(size=5, ttl=10.0))]),
    "presence": (["/a/**"], ["/a/**"]),
}


def _serve_parser() -> argparse.ArgumentParser:
    return _cli._parsers()[1]


def _toml(value: object) -> str:
    """A TOML value (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def _write(tmp_path: Path, text: str, name: str = "bayeux.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _serve_args(*argv: str) -> tuple[argparse.Namespace, ConfigFile | None, dict[str, str]]:
    """What ``bayeux serve ARGV`` would run with, the config file merged."""
    parser, serve = _cli._parsers()
    args = parser.parse_args(["serve", *argv])
    loaded, names = _cli._read_config(args, serve, ["serve", *argv])
    return args, loaded, names


def _load(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigFile:
    """Load ``text`` as ``bayeux.toml`` from its directory, so messages start with that."""
    _write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    return load_config_file(Path("bayeux.toml"), _serve_parser())


def _sample(key: str, action: argparse.Action, base: Path) -> tuple[object, object]:
    """(file value, expected option value), both different from the default."""
    if key in SAMPLES:
        return SAMPLES[key]
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return True, True
    if isinstance(action, argparse._AppendAction):
        assert action.type is None, f"{key}: add a sample to SAMPLES"
        return ["sample:value"], ["sample:value"]
    default = action.default
    if action.choices is not None:
        choice = next(c for c in action.choices if c != default)
        return choice, choice
    if action.type is int:
        value = default + 1 if isinstance(default, int) else 7
        return value, value
    if action.type is float:
        number = (default or 0.0) + 1.5
        return number, number
    if action.type is Path:
        return f"sub/{key}", base / "sub" / key
    assert action.type is None, f"{key}: add a sample to SAMPLES"
    return f"/sample-{key}", f"/sample-{key}"


# ------------------------------------------------------- every flag, walked


def test_every_serve_option_can_be_set_from_the_file(tmp_path: Path) -> None:
    options = file_options(_serve_parser())
    assert {"port", "history", "allow-origin", "js-safe-integers", "admin-token-file"} <= set(
        options
    )
    assert "config" not in options
    assert "reuse-port" not in options  # suppressed: the workers' own
    assert "help" not in options
    for key, action in options.items():
        value, expected = _sample(key, action, tmp_path)
        assert expected != action.default, key
        path = _write(tmp_path, f"{key} = {_toml(value)}\n")
        args, loaded, names = _serve_args("--config", str(path))
        assert getattr(args, action.dest) == expected, key
        assert loaded is not None
        assert names == {action.dest: f"{path}: {key}"}


def test_every_serve_option_of_the_parser_is_a_key() -> None:
    """The walk above covers the parser: each long option but -h/--config/suppressed
    (and a switch's --no- form, the same key set to false)."""
    serve = _serve_parser()
    flags = {
        flag.removeprefix("--")
        for action in serve._actions
        if action.help is not argparse.SUPPRESS
        for flag in action.option_strings
        if flag.startswith("--") and flag not in ("--help", "--config")
        if not (isinstance(action, argparse.BooleanOptionalAction) and flag.startswith("--no-"))
    }
    assert flags == set(file_options(serve))


def test_a_flag_the_file_cannot_express_is_noticed() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose", "-v", action="count")
    with pytest.raises(TypeError, match="--verbose: a config file cannot set a _CountAction"):
        file_options(parser)


def test_the_sections_cover_every_settings_field() -> None:
    """A new field in bayeux_trio.access's settings needs a key here."""

    def keys(cls: Any, *, besides: tuple[str, ...] = ()) -> set[str]:
        return {f.name.replace("_", "-") for f in dataclasses.fields(cls)} - set(besides)

    assert set(SECTION_KEYS["access"]) == keys(AccessSettings, besides=("rules", "hooks"))
    assert set(SECTION_KEYS["access.tokens"]) == keys(TokenFileSettings)
    assert set(SECTION_KEYS["access.jwt"]) == keys(JwtSettings)
    assert set(SECTION_KEYS["channels"]) == keys(ChannelRule) | {"presence", "history"}
    for kind in ("handshake", "subscribe", "publish"):
        assert set(SECTION_KEYS[f"hooks.{kind}"]) == keys(HookSettings)


# ----------------------------------------------------- the command line wins


def test_the_command_line_wins_per_option(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'port = 1111\ntimeout = 10\nmount = "/file"\njs-safe-integers = true\n'
        'log-level = "debug"\n',
    )
    args, _, names = _serve_args("--config", str(path), "--port", "2222", "--log-level", "info")
    assert args.port == 2222
    assert args.log_level == "info"  # the command line's, though it is the default
    assert args.timeout == 10.0
    assert args.mount == "/file"
    assert args.js_safe_integers is True
    assert set(names) == {"timeout", "mount", "js_safe_integers"}
    # Options in neither keep their defaults.
    assert args.max_body == 1024 * 1024
    assert args.session_timeout is None


def test_a_switch_the_file_turns_on_is_turned_off_on_the_command_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "js-safe-integers = true\n")
    args, _, _ = _serve_args("--config", str(path), "--no-js-safe-integers")
    assert args.js_safe_integers is False
    args, _, _ = _serve_args("--config", str(path))
    assert args.js_safe_integers is True


def test_a_repeated_option_on_the_command_line_replaces_the_file_s_list(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'history = ["/a/*=5", "/b/*=6"]\nallow-origin = ["https://a.example"]\n'
        'extension = ["tests.trio.ext_module:Auth"]\n',
    )
    args, _, _ = _serve_args(
        "--config", str(path), "--history", "/c/*=7", "--allow-origin", "https://c.example"
    )
    assert args.history == [("/c/*", HistoryPolicy(size=7))]
    assert args.allow_origin == ["https://c.example"]
    assert args.extension == ["tests.trio.ext_module:Auth"]
    args, _, _ = _serve_args("--config", str(path))
    assert args.history == [("/a/*", HistoryPolicy(size=5)), ("/b/*", HistoryPolicy(size=6))]
    assert args.allow_origin == ["https://a.example"]


def test_channels_add_presence_and_history_whatever_the_command_line_says(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        'presence = ["/room/*"]\nhistory = ["/chat/*=5"]\n'
        '[[channels]]\npattern = "/chat/*"\npresence = true\nhistory = "100:300"\n'
        '[[channels]]\npattern = "/news"\nhistory = 10\n',
    )
    args, _, _ = _serve_args("--config", str(path))
    assert args.presence == ["/chat/*", "/room/*"]
    # the option's own entry comes last, so for one pattern it wins
    assert args.history == [
        ("/chat/*", HistoryPolicy(size=100, ttl=300.0)),
        ("/news", HistoryPolicy(size=10)),
        ("/chat/*", HistoryPolicy(size=5)),
    ]
    engine = _cli._config(args).engine
    assert engine.presence == ("/chat/*", "/room/*")
    assert engine.history == {"/chat/*": HistoryPolicy(size=5), "/news": HistoryPolicy(size=10)}
    args, _, _ = _serve_args("--config", str(path), "--presence", "/x/**", "--history", "/y=1")
    assert args.presence == ["/chat/*", "/x/**"]
    assert [pattern for pattern, _ in args.history] == ["/chat/*", "/news", "/y"]


def test_a_worker_reads_the_file_and_keeps_its_own_options(tmp_path: Path) -> None:
    """run_workers runs ``ARGV --workers 1 --reuse-port``: the file's workers loses."""
    path = _write(tmp_path, 'workers = 4\nengine = "redis://127.0.0.1:6379/0"\nport = 9000\n')
    args, _, _ = _serve_args("--config", str(path))
    assert args.workers == 4
    args, _, _ = _serve_args("--config", str(path), "--workers", "1", "--reuse-port")
    assert args.workers == 1
    assert args.reuse_port is True
    assert args.engine == "redis://127.0.0.1:6379/0"
    assert args.port == 9000


# -------------------------------------------------------------- file names


def test_relative_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(
        tmp_path,
        'static = "www"\ncertfile = "tls/cert.pem"\nkeyfile = "/etc/key.pem"\n'
        'admin-token-file = "../admin.token"\n'
        '[access]\nbackend-secret-file = "backend.secret"\n'
        '[access.tokens]\nfile = "tokens.json"\n'
        '[access.jwt]\njwks-file = "keys/jwks.json"\n',
        name="conf/bayeux.toml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf = tmp_path / "conf"
    args, loaded, _ = _serve_args("--config", str(path))
    assert args.static == conf / "www"
    assert args.certfile == conf / "tls" / "cert.pem"
    assert args.keyfile == Path("/etc/key.pem")
    assert args.admin_token_file == conf / ".." / "admin.token"
    assert loaded is not None
    access = loaded.access
    assert access.backend_secret_file == conf / "backend.secret"
    assert access.tokens is not None
    assert access.tokens.file == conf / "tokens.json"
    assert access.jwt is not None
    assert access.jwt.jwks_file == conf / "keys" / "jwks.json"
    # a file named relative to the current directory: so are its paths
    monkeypatch.chdir(tmp_path)
    args, _, _ = _serve_args("--config", "conf/bayeux.toml")
    assert args.static == Path("conf/www")


# -------------------------------------------------------------- the sections


def test_the_sections_become_access_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _load(
        """
[access]
handshake = "authenticated"
error = "403:{channel}:No"

[access.tokens]
file = "tokens.json"
field = "auth.registry"

[access.jwt]
secret-file = "jwt.secret"
algorithms = ["HS384"]
field = "auth.t"
channel-field = "auth.c"
leeway = 30
audience = "chat"
issuer = "https://app.example"
info-claim = "profile"
channels-claim = "rooms"

[[channels]]
pattern = "/private/{a}/{b}"
subscribe = ["{a}", "{b}"]
publish = "server"
error = "Invalid subscription auth token"
sender = "from"

[hooks.publish]
url = "https://backend.example/publish"
timeout = 3
max-in-flight = 5
on-error = "allow"
headers = { Authorization = "Bearer x", X-Extra = "1" }
""",
        tmp_path,
        monkeypatch,
    )
    access = loaded.access
    assert access.active
    assert access.handshake == "authenticated"
    assert access.error == "403:{channel}:No"
    assert access.tokens == TokenFileSettings(file=Path("tokens.json"), field="auth.registry")
    assert access.jwt == JwtSettings(
        secret_file=Path("jwt.secret"),
        algorithms=("HS384",),
        field="auth.t",
        channel_field="auth.c",
        leeway=30,
        audience="chat",
        issuer="https://app.example",
        info_claim="profile",
        channels_claim="rooms",
    )
    assert access.rules == (
        ChannelRule(
            "/private/{a}/{b}",
            subscribe=("{a}", "{b}"),
            publish="server",
            error="Invalid subscription auth token",
            sender="from",
        ),
    )
    assert access.hooks == {
        "publish": HookSettings(
            url="https://backend.example/publish",
            timeout=3,
            max_in_flight=5,
            on_error="allow",
            headers=(("Authorization", "Bearer x"), ("X-Extra", "1")),
        )
    }
    assert loaded.options == {}


def test_no_sections_is_faye_s_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load("port = 8000\n", tmp_path, monkeypatch)
    assert loaded.access == AccessSettings()
    assert not loaded.access.active
    assert (
        loaded.summary() == "1 serve option; no access control (anyone may do anything, as in Faye)"
    )


# ------------------------------------------------------------------- errors

_BAD_FILES = [
    # unknown keys, everywhere
    ("sesion-timeout = 5", "sesion-timeout: unknown key (did you mean session-timeout?)"),
    ("session_timeout = 5", "session_timeout: unknown key (did you mean session-timeout?)"),
    ("config = 'other.toml'", "config: unknown key"),
    ("reuse-port = true", "reuse-port: unknown key"),
    ("[access]\nhandshak = 'anyone'", "access.handshak: unknown key (did you mean handshake?)"),
    (
        "[access.tokens]\nfile = 't.json'\nfeild = 'x'",
        "access.tokens.feild: unknown key (did you mean field?)",
    ),
    (
        "[access.jwt]\nsecret = 'x'",
        "access.jwt.secret: unknown key (did you mean secret-file?)",
    ),
    (
        "[[channels]]\npattern = '/a'\nsubscirbe = 'anyone'",
        "channels[0].subscirbe: unknown key (did you mean subscribe?)",
    ),
    ("[hooks.connect]\nurl = 'http://x'", "hooks.connect: unknown key"),
    (
        "[hooks.publish]\nurl = 'http://x'\ntimeout-s = 3",
        "hooks.publish.timeout-s: unknown key (did you mean timeout?)",
    ),
    # types
    ("session-timeout = 'abc'", "session-timeout: want a number, not 'abc'"),
    ("port = '80'", "port: want an integer, not '80'"),
    ("port = 80.5", "port: want an integer, not 80.5"),
    ("port = true", "port: want an integer, not true"),
    ("mount = 5", "mount: want a string, not 5"),
    ("js-safe-integers = 'yes'", "js-safe-integers: want true or false, not 'yes'"),
    ("history = '/a=1'", "history: want a list (say history = [\"...\"]), not '/a=1'"),
    ("allow-origin = [1]", "allow-origin[0]: want a string, not 1"),
    ("static = ''", "static: want a file name, not ''"),
    ("access = 5", "access: want a table ([access]), not 5"),
    ("channels = 5", "channels: want [[channels]] tables, not 5"),
    ("[access.jwt]\nsecret-file = 'k'\nleeway = '5'", "access.jwt.leeway: want a number, not '5'"),
    ("[[channels]]\npattern = '/a'\nsubscribe = 5", "channels[0].subscribe: want a keyword"),
    ("[[channels]]\npattern = '/a'\nhistory = true", "channels[0].history: want SIZE[:TTL]"),
    ("[hooks.publish]\nurl = 'http://x'\nheaders = 5", "hooks.publish.headers: want a table"),
    ("[hooks.publish]\nurl = 'http://x'\nmax-in-flight = 1.5", "hooks.publish.max-in-flight: want"),
    (
        "[hooks.publish]\nurl = 'http://x'\nheaders = { 'Bad Header' = 'x' }",
        "hooks.publish.headers: 'Bad Header' is not an HTTP header name",
    ),
    # values, through the flag's own type= and choices=
    ("history = ['/a=x']", "history[0]: '/a=x': want PATTERN=SIZE[:TTL]"),
    ("history = ['/ok=1', 'nope=1']", "history[1]: 'nope=1': 'nope' is not a channel pattern"),
    ("presence = ['/a/{b}']", "presence[0]: presence: '/a/{b}' is not a channel name or pattern"),
    (
        "log-level = 'loud'",
        "log-level: want one of 'debug', 'info', 'warning', 'error', not 'loud'",
    ),
    # the settings' own checks, named by key path
    (
        "[access.jwt]\nsecret-file = 'jwt.secret'\nleeway = 900",
        "access.jwt.leeway: want 0 to 300 seconds, not 900",
    ),
    (
        "[access.jwt]\nsecret-file = 'a'\npublic-key-file = 'b'",
        "access.jwt: secret-file, public-key-file, jwks-file: give exactly one key source",
    ),
    ("[access]\nhandshake = 'authenticated'", "access.handshake: 'authenticated' needs"),
    (
        # a hook names no user: alone it left every handshake refused
        "[access]\nhandshake = 'authenticated'\n[hooks.handshake]\nurl = 'http://x'",
        "access.handshake: 'authenticated' needs [access.tokens] or [access.jwt]",
    ),
    ("[access.tokens]\nfield = 'x'", "access.tokens.file: missing"),
    ("[hooks.publish]\ntimeout = 2", "hooks.publish.url: missing"),
    ("[hooks.publish]\nurl = 'ftp://x'", "hooks.publish.url: want an http:// or https:// URL"),
    ("[[channels]]\nsubscribe = 'anyone'", "channels[0].pattern: missing"),
    ("[[channels]]\npattern = '/a'\n[[channels]]\npattern = '/meta/x'", "channels[1].pattern: "),
    (
        "[[channels]]\npattern = '/private/{a}/{b}'\nsubscribe = ['{a}', '{c}']",
        "channels[0].subscribe: ",
    ),
    (
        "[[channels]]\npattern = '/private/{a}/{b}'\npresence = true",
        "channels[0].presence: needs a Bayeux channel or glob (only a trailing * or **, "
        "no {var}), not '/private/{a}/{b}'",
    ),
    (
        "[[channels]]\npattern = '/chat/{room}'\nhistory = '10'",
        "channels[0].history: needs a Bayeux channel or glob",
    ),
    ("[[channels]]\npattern = '/chat/*'\nhistory = 'ten'", "channels[0].history: '/chat/*=ten'"),
    # not TOML
    ("port = \n", "line 1, column 8: Invalid value"),
    ("[access]\nerror = 'a'\nerror = 'b'\n", "line 3, column "),
]


@pytest.mark.parametrize(("text", "message"), _BAD_FILES)
def test_a_bad_file_is_refused_naming_the_key(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(text + "\n", tmp_path, monkeypatch)
    assert str(caught.value).startswith(f"bayeux.toml: {message}")
    assert "\n" not in str(caught.value)


def test_a_missing_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.toml: cannot read it \(No such file"):
        load_config_file(tmp_path / "nothere.toml", _serve_parser())
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"port = '\xff'\n")
    with pytest.raises(ConfigError, match=r"binary\.toml: not UTF-8 text"):
        load_config_file(binary, _serve_parser())


def test_a_file_the_sections_name_must_be_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _load("[access.tokens]\nfile = 'tokens.json'\n", tmp_path, monkeypatch)
    with pytest.raises(
        ConfigError, match=r"^bayeux.toml: access.tokens.file: cannot read tokens.json \(No such"
    ):
        loaded.check_files()
    (tmp_path / "tokens.json").write_text("{}")
    loaded.check_files()


def test_an_access_check_s_error_is_named_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _load("[access.jwt]\nsecret-file = 's'\n", tmp_path, monkeypatch)
    assert (
        loaded.explain("secret_file: the secret is 3 bytes")
        == "bayeux.toml: access.jwt.secret-file: the secret is 3 bytes"
    )
    assert (
        loaded.explain("backend_secret_file: too short")
        == "bayeux.toml: access.backend-secret-file: too short"
    )
    # "field" is in two tables: not guessed
    assert loaded.explain("field: bad") == "bayeux.toml: field: bad"
    assert loaded.explain("hooks.publish.url: bad") == "bayeux.toml: hooks.publish.url: bad"


# --------------------------------------------- serve and check-config, in-process


def test_serve_refuses_a_bad_file_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "session-timeout = 'abc'\n")
    with pytest.raises(SystemExit) as caught:
        _cli.main(["serve", "--config", str(path)])
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"bayeux: {path}: session-timeout: want a number, not 'abc'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-body = 0", "max-body: max_body must be at least 1"),
        ("grace = -1", "grace: want a number of seconds >= 0, not -1.0"),
        ("static = 'nowhere'", "static {dir}/nowhere: not a directory"),
        ("certfile = 'cert.pem'", "certfile and --keyfile go together: give both, or neither"),
        (
            "admin-path = '/admin'\nadmin-token-file = 'none'",
            "admin-token-file: cannot read {dir}/none (No such file or directory)",
        ),
    ],
)
def test_a_value_the_server_refuses_names_the_file_s_key(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, f"port = 0\nallocator = 'python'\n{text}\n")
    with pytest.raises(SystemExit) as caught:
        _cli.main(["serve", "--config", str(path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err == f"bayeux: {path}: {message.format(dir=tmp_path)}\n"


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        "port = 8000\n[[channels]]\npattern = '/chat/*'\npresence = true\n"
        "[hooks.publish]\nurl = 'http://127.0.0.1:3000/p'\n",
    )
    assert _cli.main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"{path}: ok\n"
        "1 serve option; 1 channel rule; handshake: anyone; auth: none; hooks: publish; "
        "[[channels]] add 1 presence and 0 history patterns\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 'x'", "port: want an integer, not 'x'"),
        ("workers = 2", "--workers N needs N >= 1, --engine redis://... and a fixed --port"),
        ("extension = ['no_such_module_xyz:Ext']", "cannot import 'no_such_module_xyz'"),
        ("[access.tokens]\nfile = 'missing.json'", "access.tokens.file: cannot read"),
        # what serve refuses when it builds the hooks, check-config refuses too
        ("[hooks.publish]\nurl = 'http://'", "hooks.publish.url: 'http://' names no host"),
        ("max-json-depth = 2", "max-json-depth: max_json_depth must be an int from 3"),
    ],
)
def test_check_config_refuses(
    text: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # an extension's look-up may add to it
    path = _write(tmp_path, text + "\n")
    with pytest.raises(SystemExit) as caught:
        _cli.main(["check-config", str(path)])
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("bayeux: ")
    assert message in err
    assert err.count("\n") == 1


# ------------------------------------------------- the documented example


def _documented_example() -> str:
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    (block,) = blocks
    return block


def test_the_documented_example_names_every_key() -> None:
    block = _documented_example()
    for key in file_options(_serve_parser()):
        assert re.search(rf"^(# )?{re.escape(key)} = ", block, re.MULTILINE), key
    for table, keys in SECTION_KEYS.items():
        if table in ("access.tokens", "access.jwt") or table == "hooks.subscribe":
            assert f"[{table}]" in block, table
        for key in keys:
            if key not in ("tokens", "jwt"):
                assert re.search(rf"^(# )?{re.escape(key)} = ", block, re.MULTILINE), key
    assert "[[channels]]" in block
    assert "[access]" in block


def test_the_documented_example_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _documented_example())
    # the files it names, as a deployment would have them
    (tmp_path / "tokens.json").write_bytes(
        (ROOT / "examples/private_chat/tokens.json").read_bytes()
    )
    (tmp_path / "jwt.secret").write_text("a-shared-secret-of-at-least-32-bytes-for-hs256\n")
    (tmp_path / "backend.secret").write_text("a-backend-secret-long-enough\n")
    assert _cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok\n")
    assert "3 channel rules" in out


def test_the_documented_defaults_are_the_parser_s(tmp_path: Path) -> None:
    """Each option the example sets, it sets to its default."""
    path = _write(tmp_path, _documented_example())
    (tmp_path / "tokens.json").write_text("{}")
    args, loaded, _ = _serve_args("--config", str(path))
    defaults = _cli._parser().parse_args(["serve"])
    assert loaded is not None
    assert len(loaded.options) >= 20
    for dest in loaded.options:
        if dest in ("history", "presence"):
            continue  # [[channels]] adds to them
        assert getattr(args, dest) == getattr(defaults, dest), dest


ACCESS_DOC = ROOT / "docs" / "access.md"
PRIVATE_CHAT = ROOT / "examples" / "private_chat" / "bayeux.toml"


def test_the_toml_in_access_md_is_read_as_it_says(tmp_path: Path) -> None:
    """Each TOML block of docs/access.md is a config file (its files present), and
    the private chat it shows is examples/private_chat/bayeux.toml's."""
    blocks = re.findall(r"```toml\n(.*?)```", ACCESS_DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 3
    (tmp_path / "tokens.json").write_bytes(PRIVATE_CHAT.with_name("tokens.json").read_bytes())
    (tmp_path / "jwt.secret").write_text("a-shared-secret-of-at-least-32-bytes-for-hs256\n")
    (tmp_path / "public").mkdir()
    loaded = []
    for number, block in enumerate(blocks):
        path = _write(tmp_path, block, name=f"block{number}.toml")
        assert _cli.main(["check-config", str(path)]) == 0, block
        loaded.append(load_config_file(path, _serve_parser()))
    documented, example = loaded[0], load_config_file(PRIVATE_CHAT, _serve_parser())
    assert documented.access.rules == example.access.rules
    assert documented.access.error == example.access.error == "Invalid subscription auth token"
    assert documented.access.tokens is not None
    assert example.access.tokens is not None
    assert documented.access.tokens.field == example.access.tokens.field
    assert documented.access.tokens.file.name == example.access.tokens.file.name
    assert documented.options == {"static": tmp_path / "public"}
    assert example.options == {"static": PRIVATE_CHAT.parent / "public"}
    assert loaded[1].access.jwt is not None
    assert set(loaded[2].access.hooks) == {"subscribe"}


# ------------------------------------------------------ as a real command


async def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*BAYEUX, *args], cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False
    )


@fail_after(30)
async def test_check_config_as_a_command(tmp_path: Path) -> None:
    good = _write(tmp_path, "port = 8000\n", name="good.toml")
    result = await _run("check-config", str(good))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith(f"{good}: ok\n")
    bad = _write(tmp_path, "[access.jwt]\nsecret = 'x'\n", name="bad.toml")
    result = await _run("check-config", str(bad))
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"bayeux: {bad}: access.jwt.secret: unknown key (did you mean secret-file?)\n"
    )


@fail_after(30)
async def test_serve_with_a_config_file(tmp_path: Path) -> None:
    """A real server from a file; the command line's --port wins over the file's."""
    port = free_port()
    path = _write(
        tmp_path,
        f'port = {free_port()}\nhost = "127.0.0.1"\nmount = "/from-file"\n'
        'allocator = "python"\nlog-level = "warning"\n',
    )
    process = await trio.lowlevel.open_process(
        [*BAYEUX, "serve", "--config", str(path), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await until_serving(
            port, alive=lambda: process.returncode is None, seconds=15, path="/from-file"
        )
        assert await handshake(port, mount="/from-file")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
