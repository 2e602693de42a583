"""JwtVerifier: connection and channel tokens, each refusal by its reason.

Keys are made with ``cryptography`` per test session and written to
``tmp_path``; time is a fake clock the tests move. Hostile tokens (``alg:
none``, HS256 signed with the RSA public key) are built by hand, as an
attacker would: PyJWT refuses to make them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from bayeux_trio.access import JwtSettings
from bayeux_trio.access._identity import AuthError, Identity
from bayeux_trio.access._jwt import MAX_TOKEN_LENGTH, JwtVerifier
from tests._support import tokens
from tests._support.tokens import b64url, forge

NOW = 1_700_000_000.0
SECRET = b"s3cret-for-tests-" + b"x" * 32
INVALID = "401::Authentication token invalid"
EXPIRED = "401::Authentication token expired"
NOT_YET = "401::Authentication token not yet valid"
MISSING = "401::Authentication token missing"
CHANNEL_INVALID = "401::Channel token invalid"


class Clock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return tokens.rsa_key()


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return tokens.rsa_key("other")


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def claims(**extra: Any) -> dict[str, Any]:
    """alice's, issued at NOW - 10, expiring at NOW + 3600; None leaves a claim out."""
    return tokens.claims(now=NOW, **extra)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hs(secret_file: Path, clock: Clock) -> JwtVerifier:
    return JwtVerifier(JwtSettings(secret_file=secret_file), clock=clock)


def hs_token(**extra: Any) -> str:
    return jwt.encode(claims(**extra), SECRET, algorithm="HS256")


def refused(call: Callable[[], object], error: str) -> None:
    with pytest.raises(AuthError) as caught:
        call()
    assert caught.value.error == error
    assert str(caught.value) == error


def write_pem(tmp_path: Path, key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(pem(key))
    return path


def write_jwks(tmp_path: Path, keys: list[Any]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def rsa_jwk(key: rsa.RSAPrivateKey, **extra: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), **extra}


def ec_jwk(key: ec.EllipticCurvePrivateKey, **extra: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), **extra}


# ----------------------------------------------------------------- good tokens


def test_hs256_connection_token_gives_the_identity(hs: JwtVerifier) -> None:
    token = hs_token(info={"name": "Alice"}, channels=["/chat/**", "/private/alice"])
    assert hs.connection(token) == Identity(
        user="alice",
        info={"name": "Alice"},
        channels=("/chat/**", "/private/alice"),
        expires=NOW + 3600,
    )


def test_no_exp_info_or_channels_mean_none(hs: JwtVerifier) -> None:
    identity = hs.connection(jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256"))
    assert identity == Identity(user="bob")
    assert identity.expires is None
    assert identity.channels is None


def test_an_empty_channels_list_allows_no_channel(hs: JwtVerifier) -> None:
    assert hs.connection(hs_token(channels=[])).channels == ()


def test_info_and_channels_claims_are_configurable(secret_file: Path, clock: Clock) -> None:
    settings = JwtSettings(secret_file=secret_file, info_claim="profile", channels_claim="allow")
    verifier = JwtVerifier(settings, clock=clock)
    identity = verifier.connection(hs_token(profile=[1, "x"], allow=["/a"], info="ignored"))
    assert identity.info == [1, "x"]
    assert identity.channels == ("/a",)


def test_rs256(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    settings = JwtSettings(public_key_file=write_pem(tmp_path, rsa_key.public_key()))
    verifier = JwtVerifier(settings, clock=clock)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert verifier.connection(token).user == "alice"


def test_es256(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, clock: Clock) -> None:
    settings = JwtSettings(public_key_file=write_pem(tmp_path, ec_key.public_key()))
    verifier = JwtVerifier(settings, clock=clock)
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert verifier.connection(token).user == "alice"


def test_the_default_clock_is_the_wall_clock(secret_file: Path) -> None:
    import time

    verifier = JwtVerifier(JwtSettings(secret_file=secret_file))
    token = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert verifier.connection(token).user == "a"
    stale = jwt.encode({"sub": "a", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    refused(lambda: verifier.connection(stale), EXPIRED)


# ------------------------------------------------------------------------ JWKS


@pytest.fixture
def jwks(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, clock: Clock
) -> JwtVerifier:
    path = write_jwks(tmp_path, [rsa_jwk(rsa_key, kid="r1"), ec_jwk(ec_key, kid="e1")])
    return JwtVerifier(JwtSettings(jwks_file=path), clock=clock)


def test_jwks_picks_the_key_by_kid(
    jwks: JwtVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    by_rsa = jwt.encode(claims(sub="r"), rsa_key, algorithm="RS256", headers={"kid": "r1"})
    by_ec = jwt.encode(claims(sub="e"), ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert jwks.connection(by_rsa).user == "r"
    assert jwks.connection(by_ec).user == "e"


@pytest.mark.parametrize("kid", [None, "nobody", "e1"])
def test_jwks_refuses_a_missing_unknown_or_wrong_kid(
    jwks: JwtVerifier, rsa_key: rsa.RSAPrivateKey, kid: str | None
) -> None:
    headers = {} if kid is None else {"kid": kid}
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers=headers)
    refused(lambda: jwks.connection(token), INVALID)


def test_jwks_refuses_a_kid_that_is_not_a_string(jwks: JwtVerifier) -> None:
    token = forge({"alg": "RS256", "kid": 1}, claims(), b"whatever")
    refused(lambda: jwks.connection(token), INVALID)


def test_jwks_with_one_key_takes_a_token_without_kid(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, clock: Clock
) -> None:
    settings = JwtSettings(jwks_file=write_jwks(tmp_path, [ec_jwk(ec_key)]))
    verifier = JwtVerifier(settings, clock=clock)
    assert verifier.connection(jwt.encode(claims(), ec_key, algorithm="ES256")).user == "alice"


def test_jwks_skips_encryption_keys(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    keys = [rsa_jwk(other_rsa_key, kid="enc", use="enc"), rsa_jwk(rsa_key, kid="sig", use="sig")]
    verifier = JwtVerifier(JwtSettings(jwks_file=write_jwks(tmp_path, keys)), clock=clock)
    assert verifier.connection(jwt.encode(claims(), rsa_key, algorithm="RS256")).user == "alice"
    signed_by_enc = jwt.encode(claims(), other_rsa_key, algorithm="RS256", headers={"kid": "enc"})
    refused(lambda: verifier.connection(signed_by_enc), INVALID)


def test_a_jwk_bound_to_an_algorithm_checks_only_that_one(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    path = write_jwks(tmp_path, [rsa_jwk(rsa_key, kid="k", alg="PS256")])
    settings = JwtSettings(jwks_file=path, algorithms=("RS256", "PS256"))
    verifier = JwtVerifier(settings, clock=clock)
    ps = jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "k"})
    rs = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k"})
    assert verifier.connection(ps).user == "alice"
    refused(lambda: verifier.connection(rs), INVALID)


# ---------------------------------------------------------------------- times


def test_expired(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(exp=int(NOW) + 60)
    assert hs.connection(token).user == "alice"
    clock.now = NOW + 60 + 5 + 1
    refused(lambda: hs.connection(token), EXPIRED)


def test_expired_within_the_leeway_is_accepted(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(exp=int(NOW) + 60)
    clock.now = NOW + 60 + 4.9  # the default leeway is 5 s
    assert hs.connection(token).expires == NOW + 60
    clock.now = NOW + 60 + 5  # exp + leeway is the first instant it is refused
    refused(lambda: hs.connection(token), EXPIRED)


@pytest.mark.parametrize(("leeway", "accepted"), [(0, False), (30, True), (300, True)])
def test_the_verifier_honours_the_configured_leeway(
    secret_file: Path, clock: Clock, leeway: float, accepted: bool
) -> None:
    verifier = JwtVerifier(JwtSettings(secret_file=secret_file, leeway=leeway), clock=clock)
    token = hs_token(exp=int(NOW) - 20, iat=int(NOW) - 100)
    if accepted:
        assert verifier.connection(token).user == "alice"
    else:
        refused(lambda: verifier.connection(token), EXPIRED)


def test_not_yet_valid(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(nbf=int(NOW) + 60)
    refused(lambda: hs.connection(token), NOT_YET)
    clock.now = NOW + 55  # within the leeway of nbf
    assert hs.connection(token).user == "alice"


def test_issued_in_the_future_beyond_the_leeway(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(iat=int(NOW) + 60)
    refused(lambda: hs.connection(token), NOT_YET)
    clock.now = NOW + 56
    assert hs.connection(token).user == "alice"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value", ["tomorrow", True, None, [1], float("inf"), float("nan"), 10**400]
)
def test_a_time_claim_that_is_not_a_finite_number(hs: JwtVerifier, claim: str, value: Any) -> None:
    token = forge({"alg": "HS256"}, {"sub": "alice", claim: value}, SECRET)
    refused(lambda: hs.connection(token), INVALID)


# ------------------------------------------------------- signatures and keys


def test_wrong_secret(hs: JwtVerifier) -> None:
    token = jwt.encode(claims(), b"another-secret-" + b"y" * 32, algorithm="HS256")
    refused(lambda: hs.connection(token), INVALID)


def test_wrong_public_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    settings = JwtSettings(public_key_file=write_pem(tmp_path, rsa_key.public_key()))
    verifier = JwtVerifier(settings, clock=clock)
    token = jwt.encode(claims(), other_rsa_key, algorithm="RS256")
    refused(lambda: verifier.connection(token), INVALID)


def test_tampered_payload(hs: JwtVerifier) -> None:
    header, _, signature = hs_token(sub="alice").split(".")
    forged = b64url(json.dumps(claims(sub="admin")).encode())
    refused(lambda: hs.connection(f"{header}.{forged}.{signature}"), INVALID)


def test_tampered_header(hs: JwtVerifier) -> None:
    _, payload, signature = hs_token().split(".")
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "x"}).encode())
    refused(lambda: hs.connection(f"{header}.{payload}.{signature}"), INVALID)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(
    hs: JwtVerifier,
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    clock: Clock,
    alg: str,
) -> None:
    token = forge({"alg": alg, "typ": "JWT"}, claims(), None)
    refused(lambda: hs.connection(token), INVALID)
    refused(lambda: hs.channel(token), CHANNEL_INVALID)
    settings = JwtSettings(public_key_file=write_pem(tmp_path, rsa_key.public_key()))
    refused(lambda: JwtVerifier(settings, clock=clock).connection(token), INVALID)


def test_alg_missing_is_refused(hs: JwtVerifier) -> None:
    refused(lambda: hs.connection(forge({"typ": "JWT"}, claims(), SECRET)), INVALID)


@pytest.mark.parametrize("key_source", ["pem", "jwks"])
def test_hs256_signed_with_the_public_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, clock: Clock, key_source: str
) -> None:
    """The classic confusion: the attacker uses the published key as an HMAC secret."""
    public_pem = pem(rsa_key.public_key())
    if key_source == "pem":
        settings = JwtSettings(public_key_file=write_pem(tmp_path, rsa_key.public_key()))
    else:
        settings = JwtSettings(jwks_file=write_jwks(tmp_path, [rsa_jwk(rsa_key)]))
    verifier = JwtVerifier(settings, clock=clock)
    for secret in (public_pem, public_pem.strip()):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims(), secret)
        with pytest.raises(AuthError, match=f"^{INVALID}$"):
            verifier.connection(token)


def test_only_the_configured_algorithms_verify(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    path = write_pem(tmp_path, rsa_key.public_key())
    rs_only = JwtVerifier(JwtSettings(public_key_file=path, algorithms=("RS256",)), clock=clock)
    both = JwtVerifier(
        JwtSettings(public_key_file=path, algorithms=("RS256", "PS256")), clock=clock
    )
    ps = jwt.encode(claims(), rsa_key, algorithm="PS256")
    rs512 = jwt.encode(claims(), rsa_key, algorithm="RS512")
    refused(lambda: rs_only.connection(ps), INVALID)
    refused(lambda: both.connection(rs512), INVALID)
    assert both.connection(ps).user == "alice"


def test_hs512_only_refuses_hs256(tmp_path: Path, clock: Clock) -> None:
    secret = b"z" * 64
    path = tmp_path / "secret"
    path.write_bytes(secret)
    verifier = JwtVerifier(JwtSettings(secret_file=path, algorithms=("HS512",)), clock=clock)
    assert verifier.connection(jwt.encode(claims(), secret, algorithm="HS512")).user == "alice"
    refused(lambda: verifier.connection(jwt.encode(claims(), secret, "HS256")), INVALID)


# ---------------------------------------------------------------- aud and iss


@pytest.fixture
def scoped(secret_file: Path, clock: Clock) -> JwtVerifier:
    settings = JwtSettings(secret_file=secret_file, audience="push", issuer="https://app")
    return JwtVerifier(settings, clock=clock)


@pytest.mark.parametrize(
    ("aud", "iss", "ok"),
    [
        ("push", "https://app", True),
        (["web", "push"], "https://app", True),
        (None, "https://app", False),
        ("web", "https://app", False),
        (["web"], "https://app", False),
        (7, "https://app", False),
        ("push", None, False),
        ("push", "https://evil", False),
        ("push", ["https://app"], False),
    ],
)
def test_audience_and_issuer_when_configured(
    scoped: JwtVerifier, aud: Any, iss: Any, ok: bool
) -> None:
    token = forge({"alg": "HS256"}, claims(aud=aud, iss=iss), SECRET)
    if ok:
        assert scoped.connection(token).user == "alice"
    else:
        refused(lambda: scoped.connection(token), INVALID)


def test_a_token_for_some_audience_is_refused_when_none_is_configured(hs: JwtVerifier) -> None:
    refused(lambda: hs.connection(hs_token(aud="someone-else")), INVALID)
    assert hs.connection(hs_token(iss="anyone")).user == "alice"


# ------------------------------------------------------------- claim checks


@pytest.mark.parametrize("sub", [None, "", "x" * 257, 42, ["alice"], {"id": 1}])
def test_sub_must_be_a_user_id(hs: JwtVerifier, sub: Any) -> None:
    token = forge(
        {"alg": "HS256"}, {k: v for k, v in {"sub": sub}.items() if v is not None}, SECRET
    )
    refused(lambda: hs.connection(token), INVALID)


def test_a_256_character_sub_is_fine(hs: JwtVerifier) -> None:
    assert hs.connection(hs_token(sub="x" * 256)).user == "x" * 256


@pytest.mark.parametrize(
    "channels",
    ["/chat/**", None, {"/a": 1}, [1], ["/a", None], ["chat"], ["/a/**/b"], ["/a/"], [["/a"]]],
)
def test_channels_claim_must_list_channel_patterns(hs: JwtVerifier, channels: Any) -> None:
    token = forge({"alg": "HS256"}, {"sub": "alice", "channels": channels}, SECRET)
    refused(lambda: hs.connection(token), INVALID)


def test_channel_token_opens_its_channel(hs: JwtVerifier) -> None:
    token = hs_token(channel="/private/alice/bob")
    assert hs.channel(token, user="alice") == "/private/alice/bob"
    assert hs.channel(hs_token(sub=None, channel="/room/1")) == "/room/1"
    assert hs.channel(hs_token(sub=None, channel="/room/1"), user="bob") == "/room/1"


@pytest.mark.parametrize("user", [None, "bob"])
def test_a_channel_token_with_a_sub_is_that_users_alone(hs: JwtVerifier, user: str | None) -> None:
    token = hs_token(channel="/private/alice/bob")
    refused(lambda: hs.channel(token, user=user), "401::Channel token is for another user")


def test_a_channel_token_is_not_a_connection_token(hs: JwtVerifier) -> None:
    refused(lambda: hs.connection(hs_token(channel="/private/alice/bob")), INVALID)


def test_a_connection_token_is_not_a_channel_token(hs: JwtVerifier) -> None:
    refused(lambda: hs.channel(hs_token(channels=["/private/**"])), CHANNEL_INVALID)


@pytest.mark.parametrize("channel", [None, 42, ["/a"], "", "a", "/a/*", "/a/**", "/a//b"])
def test_the_channel_claim_must_be_a_channel_name(hs: JwtVerifier, channel: Any) -> None:
    token = forge({"alg": "HS256"}, {"sub": "alice", "channel": channel}, SECRET)
    refused(lambda: hs.channel(token), CHANNEL_INVALID)


def test_channel_token_refusals_say_channel_token(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(channel="/a", exp=int(NOW) + 10)
    clock.now = NOW + 100
    refused(lambda: hs.channel(token), "401::Channel token expired")
    refused(
        lambda: hs.channel(hs_token(channel="/a", nbf=int(NOW) + 500)),
        "401::Channel token not yet valid",
    )
    refused(lambda: hs.channel(None), "401::Channel token missing")
    refused(lambda: hs.channel("junk"), CHANNEL_INVALID)


# ------------------------------------------------------------ garbage input


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(hs: JwtVerifier, token: object) -> None:
    refused(lambda: hs.connection(token), MISSING)


@pytest.mark.parametrize(
    "token",
    [
        42,
        1.5,
        b"bytes.are.not",
        ["a.b.c"],
        {"token": "x"},
        "not a token",
        "a.b.c",
        "...",
        "a.b",
        "a.b.c.d.e",
        "é.é.é",
        "\x00",
        "eyJhbGciOiJIUzI1NiJ9.!!!!.x",
        "W10.e30.",  # header [] is not an object
        b64url(b"[" * 3000) + ".e30.",  # nested too deeply for json
        b64url(json.dumps({"alg": "HS256", "crit": ["exp"]}).encode()) + ".e30.x",
    ],
)
def test_garbage(hs: JwtVerifier, token: object) -> None:
    refused(lambda: hs.connection(token), INVALID)


def test_oversized_token(hs: JwtVerifier) -> None:
    def sized(padding: int) -> str:
        return hs_token(info="x" * padding)

    # base64 makes 4 characters of 3 bytes: aim a little under, then step up to the limit
    padding = (MAX_TOKEN_LENGTH - len(sized(0))) * 3 // 4 - 8
    while len(sized(padding + 1)) <= MAX_TOKEN_LENGTH:
        padding += 1
        assert padding < MAX_TOKEN_LENGTH
    assert hs.connection(sized(padding)).user == "alice"
    too_long = sized(padding + 1)
    assert len(too_long) > MAX_TOKEN_LENGTH
    refused(lambda: hs.connection(too_long), INVALID)


def test_errors_never_quote_the_token(hs: JwtVerifier, clock: Clock) -> None:
    token = hs_token(exp=int(NOW))
    clock.now = NOW + 3600
    with pytest.raises(AuthError) as caught:
        hs.connection(token)
    assert token not in repr(caught.value)
    assert caught.value.__cause__ is None
    with pytest.raises(AuthError) as caught:
        hs.connection(token[:-3])
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ----------------------------------------------------------------- key files


def test_secret_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^secret_file: cannot read .*nope"):
        JwtVerifier(JwtSettings(secret_file=tmp_path / "nope"))


@pytest.mark.parametrize(
    ("secret", "algorithms"),
    [
        (b"", ("HS256",)),
        (b"x" * 31, ("HS256",)),
        (b"x" * 47, ("HS384",)),
        (b"x" * 63, ("HS256", "HS512")),
    ],
)
def test_secret_shorter_than_the_hash_is_refused(
    tmp_path: Path, secret: bytes, algorithms: tuple[str, ...]
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(secret + b"\r\n")
    with pytest.raises(ValueError, match=r"^secret_file: the secret is \d+ bytes"):
        JwtVerifier(JwtSettings(secret_file=path, algorithms=algorithms))


def test_secret_of_exactly_the_hash_size_is_fine(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"k" * 32)
    verifier = JwtVerifier(JwtSettings(secret_file=path), clock=clock)
    assert verifier.connection(jwt.encode(claims(), b"k" * 32, "HS256")).user == "alice"


def test_a_public_key_as_the_secret_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match=r"^secret_file: holds a public key"):
        JwtVerifier(JwtSettings(secret_file=write_pem(tmp_path, rsa_key.public_key())))


def test_an_algorithm_pyjwt_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    with pytest.raises(ValueError, match=r"^algorithms: HS1 "):
        JwtVerifier(JwtSettings(secret_file=path, algorithms=("HS1",)))


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_public_key_file_not_a_pem_public_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^public_key_file: not a PEM public key$"):
        JwtVerifier(JwtSettings(public_key_file=path))


def test_public_key_file_with_a_private_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(rsa_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(ValueError, match=r"^public_key_file: not a PEM public key$"):
        JwtVerifier(JwtSettings(public_key_file=path))


def test_public_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^public_key_file: cannot read"):
        JwtVerifier(JwtSettings(public_key_file=tmp_path / "nope.pem"))


def test_a_small_rsa_key_is_refused(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match=r"^public_key_file: the RSA key has 1024 bits"):
        JwtVerifier(JwtSettings(public_key_file=write_pem(tmp_path, small.public_key())))


@pytest.mark.parametrize(
    ("curve", "algorithms"),
    [
        (ec.SECP256R1(), ("RS256",)),
        (ec.SECP384R1(), ("ES256",)),
        (ec.SECP224R1(), ("ES256",)),
    ],
)
def test_a_key_that_cannot_check_the_algorithms(
    tmp_path: Path, curve: ec.EllipticCurve, algorithms: tuple[str, ...]
) -> None:
    key = ec.generate_private_key(curve).public_key()
    settings = JwtSettings(public_key_file=write_pem(tmp_path, key), algorithms=algorithms)
    with pytest.raises(ValueError, match=r"^public_key_file: an EC key on .* cannot check"):
        JwtVerifier(settings)


def test_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "key.pem"
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError, match=r"^public_key_file: want an RSA or EC public key$"):
        JwtVerifier(JwtSettings(public_key_file=path))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        "[]",
        '{"keys": []}',
        '{"keys": {}}',
        '{"key": [{"kty": "RSA"}]}',
    ],
)
def test_jwks_file_not_a_key_set(tmp_path: Path, content: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"^jwks_file: not a JSON Web Key Set"):
        JwtVerifier(JwtSettings(jwks_file=path))


def test_jwks_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^jwks_file: cannot read"):
        JwtVerifier(JwtSettings(jwks_file=tmp_path / "nope.json"))


def test_jwks_bad_keys(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    def fails(keys: list[Any], pattern: str, **settings: Any) -> None:
        with pytest.raises(ValueError, match=pattern):
            JwtVerifier(JwtSettings(jwks_file=write_jwks(tmp_path, keys), **settings))

    good = rsa_jwk(rsa_key, kid="a")
    fails([good, "x"], r"^jwks_file: key 1 is not a JSON object$")
    fails(
        [{"kty": "oct", "k": b64url(SECRET)}], r"^jwks_file: key 0: want an RSA or EC public key$"
    )
    fails([{"kty": "RSA", "kid": "b"}], r"^jwks_file: key 0 \('b'\): not a usable JSON Web Key")
    fails([{"kid": "b"}], r"^jwks_file: key 0 \('b'\): not a usable JSON Web Key")
    fails([good, {**ec_jwk(ec_key), "kid": 5}], r"^jwks_file: key 1 \(5\): kid must be a string$")
    fails([good, rsa_jwk(rsa_key, kid="a")], r"^jwks_file: key 1 \('a'\): two keys have this kid$")
    fails(
        [rsa_jwk(rsa_key, kid="c", alg="RS512")], r"key 0 \('c'\): is for RS512, which algorithms"
    )
    fails(
        [ec_jwk(ec_key)],
        r"^jwks_file: key 0: an EC key on secp256r1 cannot check RS256",
        algorithms=("RS256",),
    )
    fails([rsa_jwk(rsa_key, use="enc")], r"^jwks_file: no signing keys")
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    fails([private], r"^jwks_file: key 0: a private key; give the public key only$")


# ------------------------------------------------------------------ values


def test_identity_checks_itself() -> None:
    with pytest.raises(ValueError, match=r"^user:"):
        Identity(user="")
    with pytest.raises(ValueError, match=r"^user:"):
        Identity(user="x" * 257)
    with pytest.raises(ValueError, match=r"^channels:"):
        Identity(user="a", channels=("nope",))
    with pytest.raises(ValueError, match=r"^channels:"):
        Identity(user="a", channels=["/a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^expires:"):
        Identity(user="a", expires=float("inf"))
    assert Identity(user="a", channels=("/a/**",), expires=1.0).channels == ("/a/**",)
