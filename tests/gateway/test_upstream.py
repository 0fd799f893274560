"""Per-credential upstream details: endpoint, profileArn, machine id, proxies, TLS backend."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from urllib.parse import urlsplit

import httpx
import pytest
import truststore

from credentials import profiles
from credentials.models import Credential, GatewaySettings
from gateway.kiro import client as kiro_client
from gateway.kiro.types import BUILDER_ID_PLACEHOLDER_ARN
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def post(gateway) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )


def test_a_cli_credential_gets_the_cli_body_and_headers(gateway):
    credential, _ = gateway.add_credential(auth="api_key")
    Credential.objects.filter(pk=credential.pk).update(endpoint="cli")

    assert post(gateway).status_code == 200

    sent = gateway.fake.requests_for("chat")[-1]
    assert sent.path == "/"
    assert sent.header("x-amz-target") == (
        "AmazonCodeWhispererStreamingService.GenerateAssistantResponse"
    )
    body = json.loads(sent.body)
    assert body["conversationState"]["currentMessage"]["userInputMessage"]["origin"] == "KIRO_CLI"
    assert "profileArn" not in body and sent.problems == []


def test_an_idc_credential_resolves_its_profile_arn_once(gateway):
    profiles._settled.clear()
    credential, account = gateway.add_credential(auth="idc")

    assert post(gateway).status_code == 200
    assert post(gateway).status_code == 200

    stored = Credential.objects.get(pk=credential.pk).profile_arn
    assert stored and stored != BUILDER_ID_PLACEHOLDER_ARN
    assert stored in account.profiles
    assert len(gateway.fake.requests_for("profiles")) == 1
    chat = json.loads(gateway.fake.requests_for("chat")[-1].body)
    assert chat["profileArn"] == stored


def test_a_social_credential_sends_the_shared_social_arn(gateway):
    gateway.add_credential()

    assert post(gateway).status_code == 200

    chat = json.loads(gateway.fake.requests_for("chat")[-1].body)
    assert chat["profileArn"].endswith("/EHGA3GRVQMUK")
    assert gateway.fake.requests_for("profiles") == []


def test_the_machine_id_is_derived_once_and_kept(gateway):
    credential, account = gateway.add_credential(rotate_refresh_token=True)

    assert post(gateway).status_code == 200

    import hashlib

    expected = hashlib.sha256(f"KotlinNativeAPI/{account.refresh_token}".encode()).hexdigest()
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.machine_id == expected
    assert stored.refresh_token != account.refresh_token  # rotated, machine id kept
    chat = gateway.fake.requests_for("chat")[-1]
    assert chat.header("user-agent").endswith(f"KiroIDE-2.3.0-{expected}")


class ForwardProxy(threading.Thread):
    """A tiny HTTP forward proxy on 127.0.0.1 that counts the requests it relays."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.requests: list[str] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()

    async def _handle(self, reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, target, version = line.decode().split(" ")
                self.requests.append(f"{method} {target}")
                url = urlsplit(target)
                length = 0
                kept = []
                for header in rest.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if header and name.strip().lower() not in (b"connection", b"proxy-connection"):
                        kept.append(header)
                body = await reader.readexactly(length)
                up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
                path = url.path + (f"?{url.query}" if url.query else "")
                # One request per connection: the upstream closes after answering, and so do we.
                head = b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
                up_writer.write(f"{method} {path} {version}\r\n".encode() + head + body)
                await up_writer.drain()
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
                up_writer.close()
                writer.close()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> ForwardProxy:
        self.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_credential_proxy_carries_its_refresh_and_chat(gateway):
    credential, _ = gateway.add_credential()
    with ForwardProxy() as proxy:
        Credential.objects.filter(pk=credential.pk).update(
            proxy_url=f"http://127.0.0.1:{proxy.port}"
        )

        assert post(gateway).status_code == 200

    assert any("/refreshToken" in r for r in proxy.requests)
    assert any("/generateAssistantResponse" in r for r in proxy.requests)


def test_the_global_proxy_applies_at_once_and_direct_bypasses_it(gateway):
    first, _ = gateway.add_credential(priority=0)
    with ForwardProxy() as proxy:
        GatewaySettings.objects.update_or_create(
            pk=1, defaults={"proxy_url": f"http://127.0.0.1:{proxy.port}"}
        )
        assert post(gateway).status_code == 200
        relayed = len(proxy.requests)
        Credential.objects.filter(pk=first.pk).update(proxy_url="direct")
        assert post(gateway).status_code == 200

    assert relayed >= 2  # refresh + chat went through the global proxy, no restart
    assert len(proxy.requests) == relayed  # "direct" bypassed it
    assert UsageRecord.objects.filter(status="success").count() == 2


def test_tls_backends_pick_their_trust_stores():
    assert isinstance(kiro_client.ssl_context("native-tls"), truststore.SSLContext)
    rustls = kiro_client.ssl_context("rustls")
    assert isinstance(rustls, ssl.SSLContext) and not isinstance(rustls, truststore.SSLContext)
    assert rustls.verify_mode == ssl.CERT_REQUIRED
