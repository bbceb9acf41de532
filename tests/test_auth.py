"""Auth tokens: signing and verifying, and what a server does with them."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine import App, Blocked, Client, RemoteError, Settings
from engine.auth import Auth
from engine.errors import ErrorCode, Unauthenticated

from helpers import arun, client, eventually, serving, url


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def test_hs256_sign_verify_expiry_and_forgery():
    auth = Auth(key="k" * 32, expiry=60)
    token = auth.sign({"user": "ann"}, now=1000)
    claims = auth.verify(token, now=1030)
    assert claims["user"] == "ann" and claims["exp"] == 1060 and claims["iat"] == 1000
    with pytest.raises(Unauthenticated, match="expired"):
        auth.verify(token, now=1061)
    with pytest.raises(Unauthenticated, match="invalid"):
        Auth(key="x" * 32).verify(token, now=1030)  # signed with another key
    forged = jwt.encode({"user": "root", "exp": 9999999999}, "guessed-key" * 4, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.verify(forged)
    none_alg = jwt.encode({"user": "root", "exp": 9999999999}, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        auth.verify(none_alg)
    with pytest.raises(Unauthenticated):
        auth.verify("not a token")


def test_rs256_with_key_ids_allows_rotation():
    old_private, old_public = rsa_pair()
    new_private, new_public = rsa_pair()
    signer_old = Auth("RS256", private_key=old_private, public_keys={"k1": old_public}, key_id="k1")
    old_token = signer_old.sign({"user": "ann"})
    # After rotation: signs with k2, still verifies tokens signed with k1.
    signer_new = Auth("RS256", private_key=new_private, public_keys={"k1": old_public, "k2": new_public}, key_id="k2")
    assert signer_new.verify(old_token)["user"] == "ann"
    new_token = signer_new.sign({"user": "bob"})
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    # A verifying-only process has no private key.
    verifier = Auth("RS256", public_keys={"k1": old_public, "k2": new_public})
    assert verifier.verify(new_token)["user"] == "bob"
    assert not verifier.can_sign
    with pytest.raises(RuntimeError):
        verifier.sign({"x": 1})
    with pytest.raises(Unauthenticated):
        Auth("RS256", public_keys={"k1": old_public}).verify(new_token)  # k2 unknown there


def auth_app(**settings: object) -> App:
    app = App(settings=Settings(**settings))  # type: ignore[arg-type]

    @app.procedure("login")
    def login(socket, data):
        socket.set_token({"user": data}, expiry=data == "brief" and 1.5 or None)
        return "ok"

    @app.procedure("whoami")
    def whoami(socket, data):
        return socket.token["user"] if socket.token else None

    @app.procedure("logout")
    def logout(socket, data):
        socket.deauthenticate()

    @app.middleware("subscribe")
    def signed_in_only(req):
        if req.channel == "secret" and req.socket.token is None:
            raise Blocked("sign in first")

    @app.middleware("publish_in")
    def owner_only(req):
        if req.socket.token is None or req.socket.token["user"] != "ann":
            raise Blocked("only ann may publish")

    return app


def test_token_set_by_server_is_presented_at_the_next_handshake():
    async def scenario():
        async with serving(auth_app(auth_key="s" * 32)) as w:
            async with client(w) as c:
                assert await c.call("whoami") is None
                with pytest.raises(RemoteError) as err:
                    await c.subscribe("secret")
                assert err.value.code == ErrorCode.FORBIDDEN
                await c.call("login", "ann")
                assert c.token and await c.call("whoami") == "ann"
                (secret,) = await c.subscribe("secret")
                await c.publish("secret", "hello")
                assert await secret.get(timeout=2) == "hello"
                token = c.token
            async with client(w, token=token) as again:
                assert again.welcome.authenticated and await again.call("whoami") == "ann"
                await again.call("logout")
                await eventually(lambda: again.token is None)
                assert await again.call("whoami") is None

    arun(scenario())


def test_expired_and_forged_tokens_are_refused_at_handshake():
    async def scenario():
        async with serving(auth_app(auth_key="s" * 32)) as w:
            expired = Auth(key="s" * 32).sign({"user": "ann"}, expiry=-10)
            async with client(w, token=expired) as c:
                assert not c.welcome.authenticated and c.welcome.auth_error == "token expired"
                assert await c.call("whoami") is None
            forged = Auth(key="z" * 32).sign({"user": "ann"})
            async with client(w, token=forged) as c:
                assert not c.welcome.authenticated and c.welcome.auth_error.startswith("invalid token")
                with pytest.raises(RemoteError) as err:
                    await c.publish("news", 1)
                assert err.value.message == "only ann may publish"
                with pytest.raises(RemoteError) as err:
                    await c.authenticate(forged)
                assert err.value.code == ErrorCode.UNAUTHENTICATED
                good = Auth(key="s" * 32).sign({"user": "ann"})
                await c.authenticate(good)
                assert await c.call("whoami") == "ann"

    arun(scenario())


def test_a_token_that_expires_while_connected_is_removed():
    async def scenario():
        async with serving(auth_app(auth_key="s" * 32)) as w, client(w) as c:
            await c.call("login", "brief")  # expires in 1.5 s; exp is whole seconds
            assert await c.call("whoami") == "brief"
            await eventually(lambda: c.token is None, timeout=5)
            assert await c.call("whoami") is None

    arun(scenario())


def test_key_shared_through_the_environment_keeps_tokens_valid(monkeypatch):
    # No key configured: the first process generates one into its environment, and
    # every server started from it (the cluster's workers) signs with the same key.
    monkeypatch.delenv("TICKWIRE_AUTH_KEY", raising=False)

    async def scenario():
        async with serving(auth_app()) as one:
            async with client(one) as c:
                await c.call("login", "ann")
                token = c.token
        async with serving(auth_app()) as two:
            async with client(two, token=token) as c:
                assert c.welcome.authenticated and await c.call("whoami") == "ann"

    arun(scenario())


def test_rs256_server():
    private, public = rsa_pair()

    async def scenario():
        app = auth_app(auth_algorithm="RS256", auth_private_key=private, auth_public_keys={"main": public}, auth_key_id="main")
        async with serving(app) as w:
            async with client(w) as c:
                await c.call("login", "ann")
                assert jwt.get_unverified_header(c.token)["alg"] == "RS256"
                token = c.token
            c2 = Client(url(w), token=token)
            welcome = await c2.connect()
            assert welcome.authenticated
            await c2.close()

    arun(scenario())


def test_handshake_middleware_sees_the_token():
    app = auth_app(auth_key="s" * 32)
    seen = []

    @app.middleware("handshake")
    def record(req):
        seen.append((req.token and req.token["user"], req.auth_error))

    async def scenario():
        async with serving(app) as w:
            token = Auth(key="s" * 32).sign({"user": "ann"}, now=time.time())
            async with client(w, token=token):
                pass
            async with client(w, token="garbage"):
                pass
        assert seen[0] == ("ann", "")
        assert seen[1][0] is None and seen[1][1].startswith("invalid token")

    arun(scenario())
