"""The control API drives the fake from another thread or process; scripts travel as JSON."""

from __future__ import annotations

import threading

import httpx

from gateway.fakekiro import FakeKiroClient, Script
from gateway.fakekiro.server import FakeKiroThread
from gateway.protocol.events import AssistantResponse, ToolUse
from tests.fakekiro.builders import TIMEOUT, chat, events


def test_it_round_trips_scripts_through_json() -> None:
    script = (
        (
            Script.text("a€", chunks=2)
            + Script.tool_call("t", {"k": [1, 2]}, fragments=2, tool_use_id="tooluse_x")
            + Script.corrupt(payload=b"not json")
            + Script.raw(b"\x00\x01")
            + Script.pause(0.01)
            + Script.exception()
            + Script.error_frame()
        )
        .reset_after(5)
        .sliced("random", seed=3)
        .paced(0.001)
        .with_transfer("length")
    )

    assert Script.from_json(script.to_json()) == script
    fault = Script.throttled(retry_after=30)
    assert Script.from_json(fault.to_json()) == fault


def test_it_is_driven_from_another_thread(fake_kiro: FakeKiroThread) -> None:
    client = FakeKiroClient(fake_kiro.base_url, timeout=5)
    results: dict[str, object] = {}

    def drive() -> None:
        account = client.add_account("remote", auth="social")
        client.script(
            Script.text("remote hello") + Script.tool_call("f", {}, tool_use_id="tooluse_r"),
            account="remote",
        )
        results["account"] = account

    worker = threading.Thread(target=drive)
    worker.start()
    worker.join(10)
    account = results["account"]
    assert isinstance(account, dict)

    response = chat(fake_kiro, account["access_token"])

    assert events(response.content) == [
        AssistantResponse("remote hello"),
        ToolUse("f", "tooluse_r", "{}", stop=True),
    ]
    assert client.health()
    [logged] = client.requests(route="chat")
    assert logged["json"]["conversationState"]["chatTriggerType"] == "MANUAL"
    assert logged["headers"][0][0] == "host"
    assert client.counters()["chat_by_account"] == {"remote": 1}


def test_it_resets_configures_and_expires_over_http(fake_kiro: FakeKiroThread) -> None:
    client = FakeKiroClient(fake_kiro.base_url, timeout=5)
    account = client.add_account("remote")

    config = client.configure(pace=0.0, slicing={"mode": "fixed", "size": 2, "seed": 0})
    expired = client.expire_access_tokens("remote")
    rejected = chat(fake_kiro, account["access_token"])
    client.reset()

    assert config["slicing"]["size"] == 2
    assert expired == 1
    assert rejected.status_code == 403
    assert fake_kiro.state.accounts == {}
    assert client.requests() == []


def test_it_reports_bad_control_calls(fake_kiro: FakeKiroThread) -> None:
    response = httpx.post(
        f"{fake_kiro.base_url}/__fake__/accounts",
        json={"auth": "carrier-pigeon"},
        timeout=TIMEOUT,
    )
    missing = httpx.get(f"{fake_kiro.base_url}/__fake__/nothing", timeout=TIMEOUT)

    assert response.status_code == 400
    assert "auth must be one of" in response.json()["error"]
    assert missing.status_code == 404
