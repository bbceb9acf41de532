"""The Python client: reconnection with backoff and jitter, resubscription, close codes."""

from __future__ import annotations

import asyncio
import signal
import ssl
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine import App, Client, ConnectionClosed, Worker
from engine.client import reconnect_delay
from engine.errors import CloseCode

from helpers import ServerProcess, arun, eventually, free_port


def echo_app() -> App:
    app = App()

    @app.procedure("echo")
    def echo(socket, data):
        return data

    @app.procedure("bye")
    def bye(socket, data):
        socket.close(data, "as you wish")

    return app


async def start(port: int, app: App | None = None) -> Worker:
    w = Worker(app or echo_app())
    await w.start("127.0.0.1", port)
    return w


def test_reconnects_and_resubscribes_after_the_server_restarts():
    async def scenario():
        port = free_port()
        w = await start(port)
        c = Client(f"ws://127.0.0.1:{port}/", min_backoff=0.05, max_backoff=0.5)
        await c.connect()
        chat, news = await c.subscribe("chat", "news")
        await w.stop()
        await eventually(lambda: not c.connected)
        assert c.close_code == CloseCode.GOING_AWAY
        await asyncio.sleep(0.3)  # down for a while: several attempts fail
        w = await start(port)
        await c.wait_connected(timeout=5)
        assert c.connects == 2
        await eventually(lambda: len(w.channels.by_name) == 2)  # resubscribed in one message
        other = Client(f"ws://127.0.0.1:{port}/")
        await other.connect()
        await other.publish("news", "back")
        assert await news.get(timeout=2) == "back"
        assert await c.call("echo", 5) == 5
        await other.close()
        await c.close()
        await w.stop()

    arun(scenario())


def test_backoff_grows_exponentially_to_its_cap_with_jitter():
    delays = [reconnect_delay(a, 0.25, 4.0, 0.5, 0.0) for a in range(7)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert reconnect_delay(2, 0.25, 4.0, 0.5, 0.999) == pytest.approx(0.5005)
    assert reconnect_delay(1000, 0.25, 4.0, 0.0, 0.5) == 4.0  # no overflow after long outages


def test_no_reconnect_after_a_close_code_of_4500_or_more():
    async def scenario():
        port = free_port()
        w = await start(port)
        c = Client(f"ws://127.0.0.1:{port}/", min_backoff=0.01)
        await c.connect()
        with pytest.raises(ConnectionClosed):
            await c.call("bye", 4500)
        await asyncio.sleep(0.3)
        assert not c.connected and c.connects == 1 and c.close_code == 4500
        c2 = Client(f"ws://127.0.0.1:{port}/", min_backoff=0.01)
        await c2.connect()
        with pytest.raises(ConnectionClosed):
            await c2.call("bye", 4102)
        await c2.wait_connected(timeout=5)
        assert c2.connects == 2
        await c.close()
        await c2.close()
        await w.stop()

    arun(scenario())


def test_first_connect_failure_raises():
    async def scenario():
        c = Client(f"ws://127.0.0.1:{free_port()}/", connect_timeout=1)
        with pytest.raises(OSError):
            await c.connect()

    arun(scenario())


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls_wss(tmp_path):
    cert, key = self_signed(tmp_path)
    app = echo_app()
    app.settings.tls_cert, app.settings.tls_key = cert, key

    async def scenario():
        w = Worker(app)
        await w.start("127.0.0.1", 0)
        ctx = ssl.create_default_context(cafile=cert)
        c = Client(f"wss://localhost:{w.port}/", ssl=ctx)
        await c.connect()
        assert await c.call("echo", "secure") == "secure"
        await c.close()
        await w.stop()

    arun(scenario())


def test_tickwire_run_serves_and_sigterm_closes_clients_with_1001():
    with ServerProcess("sample_game.app:app") as server:
        async def scenario():
            from sample_game.generated import game

            c = Client(f"ws://127.0.0.1:{server.port}/", schemas=[game], reconnect=False)
            await c.connect()
            assert await c.call("echo", {"ok": True}) == {"ok": True}
            server.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: not c.connected, timeout=10)
            assert c.close_code == CloseCode.GOING_AWAY

        arun(scenario())
        assert server.proc.wait(10) == 0


def test_a_second_sigint_exits_at_once():
    server = ServerProcess("tests.slow_shutdown_app:app").start()
    try:
        server.proc.send_signal(signal.SIGINT)
        import time

        time.sleep(0.5)
        assert server.proc.poll() is None  # still draining (its stop hook takes 30 s)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(5) != 0
    finally:
        server.stop(signal.SIGKILL)
