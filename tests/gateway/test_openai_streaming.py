"""OpenAI streams live through the gateway, read with the openai SDK's stream helpers (§12).

A slow upstream proves the deltas are not synthesized at the end: the first one reaches the
client while the upstream is still silent. Failures after the head end in an error the SDK
surfaces; failures before it are plain JSON with their HTTP status; every request leaves
exactly one usage record (`UsageRecord.objects.get()`).
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway.fakekiro.script import Script
from gateway.protocol.events import AssistantResponse
from gateway.protocol.openai_stream import ChatStream, ResponsesStream
from gateway.protocol.translate import TranslateOptions
from tests.gateway.conftest import one_record, records, streaming

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-5"
PAUSE = 1.5  # seconds the slow upstream stays silent after its first words
SLOW = (
    Script.text("First words. ") + Script.pause(PAUSE) + Script.text("Last words.")
).with_usage()
MESSAGES = [{"role": "user", "content": "Tell me something"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
EXEC = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch."}
WEB_SEARCH = {"type": "web_search"}  # the hosted tool Codex declares
SEARCH_RESULTS = [{"title": "News", "url": "https://example.com/news", "snippet": "Today"}]
CUT_TOOL = Script.text("Let me run it.") + Script.event(
    "toolUseEvent",
    {"name": "exec_command", "toolUseId": "call_9", "input": '{"cmd":', "stop": False},
)


@pytest.fixture(scope="module", autouse=True)
def warm_sdk() -> None:
    """Let the openai SDK build its lazily made types before anything is timed: the first
    Responses stream a process reads costs the client itself about half a second."""
    options = TranslateOptions(model=MODEL, message_id="msg_warm")
    chat = ChatStream(options, completion_id="chatcmpl-warm", created=0, include_usage=True)
    responses = ResponsesStream(
        options, response_id="resp_warm", created_at=0, request={"model": MODEL, "input": "Hi"}
    )
    streams = {
        path: renderer.start() + renderer.feed([AssistantResponse("Hi.")]) + renderer.finish()
        for path, renderer in (("/v1/chat/completions", chat), ("/v1/responses", responses))
    }
    client = replaying(streams)
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        assert stream.get_final_completion().choices[0].message.content == "Hi."
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        assert stream.get_final_response().output_text == "Hi."


def replaying(streams: dict[str, bytes]) -> openai.OpenAI:
    """Return an SDK client that gets these bytes as the stream of each path, no network."""

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, content=streams[request.url.path], headers=headers)

    transport = httpx.MockTransport(answer)
    return openai.OpenAI(
        api_key="replay", base_url="http://replay/v1", http_client=httpx.Client(transport=transport)
    )


def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=gateway.key, base_url=gateway.base_url + "/v1", max_retries=0, timeout=30
    )


# --- live deltas -----------------------------------------------------------------------------


def test_chat_deltas_arrive_before_the_upstream_finished(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(SLOW, account=account.id)

    arrivals = []
    stream = sdk(gateway).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))

    assert [text for _, text in arrivals] == ["First words. ", "Last words."]
    assert arrivals[1][0] - arrivals[0][0] >= PAUSE - 0.3  # the first came while upstream waited
    record = one_record()
    assert (record.endpoint, record.status, record.stream) == (
        "/v1/chat/completions",
        "success",
        True,
    )
    assert record.first_token_ms is not None and record.first_token_ms < PAUSE * 1000
    assert record.output_tokens > 0 and record.credits > 0


def test_the_chat_stream_helper_gets_deltas_early_and_the_final_completion(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(SLOW, account=account.id)

    with sdk(gateway).chat.completions.stream(
        model=MODEL, messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        first = None
        for event in stream:
            if event.type == "content.delta" and first is None:
                first = time.monotonic()
        finished = time.monotonic()
        completion = stream.get_final_completion()

    assert finished - first >= PAUSE - 0.3
    assert completion.choices[0].message.content == "First words. Last words."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert one_record().status == "success"


def test_the_responses_stream_helper_gets_deltas_early_and_the_final_response(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(SLOW, account=account.id)

    with sdk(gateway).responses.stream(model=MODEL, input="Tell me something") as stream:
        kinds, first = [], None
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta" and first is None:
                first = time.monotonic()
        finished = time.monotonic()
        response = stream.get_final_response()

    assert finished - first >= PAUSE - 0.3
    assert response.output_text == "First words. Last words."
    assert response.status == "completed" and response.usage.total_tokens > 0
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    record = one_record()
    assert (record.endpoint, record.status, record.stream) == ("/v1/responses", "success", True)


def test_responses_create_streams_numbered_events(gateway):
    gateway.add_credential()

    events = list(sdk(gateway).responses.create(model=MODEL, input="Numbers", stream=True))

    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert "Numbers" in events[-1].response.output_text


def test_chat_sends_usage_in_a_last_chunk_only_when_asked(gateway):
    gateway.add_credential()
    client = sdk(gateway)

    asked = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    plain = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    assert asked[-1].choices == [] and asked[-1].usage.total_tokens > 0
    assert asked[-2].choices[0].finish_reason == "stop" and asked[-2].usage is None
    assert plain[-1].choices[0].finish_reason == "stop"  # Z: usage on the finish chunk
    assert [r.status for r in records(2)] == ["success", "success"]


# --- tools and reasoning ---------------------------------------------------------------------


def test_chat_streams_a_tool_call_with_its_arguments(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.text("Checking.") + Script.tool_call("get_weather", {"city": "Oslo"}, fragments=3),
        account=account.id,
    )

    with sdk(gateway).chat.completions.stream(
        model=MODEL, messages=MESSAGES, tools=[WEATHER]
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        completion = stream.get_final_completion()

    assert [(e.name, e.arguments) for e in done] == [("get_weather", '{"city":"Oslo"}')]
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", "Checking.")
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Oslo"}


def test_responses_streams_function_and_custom_tool_calls(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.tool_call("apply_patch", {"input": "*** Begin Patch\n*** End Patch"}, fragments=2)
        + Script.tool_call("exec_command", {"cmd": "ls"}),
        account=account.id,
    )

    with sdk(gateway).responses.stream(
        model=MODEL, input="Fix it", tools=[APPLY_PATCH, EXEC]
    ) as stream:
        kinds = [e.type for e in stream]
        response = stream.get_final_response()

    patch, command = response.output
    assert (patch.type, patch.name, patch.input) == (
        "custom_tool_call",
        "apply_patch",
        "*** Begin Patch\n*** End Patch",
    )
    assert (command.type, command.name, command.arguments) == (
        "function_call",
        "exec_command",
        '{"cmd":"ls"}',
    )
    assert "response.custom_tool_call_input.done" in kinds
    assert "response.function_call_arguments.done" in kinds


def script_reasoning(gateway) -> None:
    """Have the upstream think "Six times seven." (signed) and then answer "42"."""
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.reasoning("Six times seven.", signature="sig") + Script.text("42"),
        account=account.id,
    )


def chat_deltas(gateway, *, model: str, reasoning_effort: str) -> list[dict]:
    """Stream a chat completion with the SDK; return its chunks' deltas (without unset fields)."""
    chunks = list(
        sdk(gateway).chat.completions.create(
            model=model, messages=MESSAGES, stream=True, reasoning_effort=reasoning_effort
        )
    )
    return [c.choices[0].delta.model_dump(exclude_none=True) for c in chunks if c.choices]


def test_chat_streams_reasoning_content_when_the_request_asked_for_reasoning(gateway):
    script_reasoning(gateway)

    deltas = chat_deltas(gateway, model=MODEL, reasoning_effort="high")

    assert {"reasoning_content": "Six times seven."} in deltas
    assert "".join(d.get("content", "") for d in deltas) == "42"


def test_chat_answers_reasoning_as_reasoning_content_without_a_stream_too(gateway):
    script_reasoning(gateway)

    completion = sdk(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, reasoning_effort="high"
    )

    answer = completion.choices[0].message.model_dump()
    assert (answer["reasoning_content"], answer["content"]) == ("Six times seven.", "42")


def test_chat_shows_reasoning_as_text_when_the_effort_is_none(gateway):
    """A GPT model keeps `none` (§3.16): the client asked for no reasoning (§6.6)."""
    script_reasoning(gateway)

    deltas = chat_deltas(gateway, model="gpt-5.6-sol", reasoning_effort="none")

    assert not any("reasoning_content" in d for d in deltas)
    assert "".join(d.get("content", "") for d in deltas) == "Six times seven.42"
    assert gateway.fake.requests_for("chat")[-1].problems == []


def test_responses_streams_reasoning_as_a_summary_item(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.reasoning("Six times seven.") + Script.text("42"), account=account.id
    )

    with sdk(gateway).responses.stream(
        model=MODEL, input="6*7?", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        summary = [e.delta for e in stream if e.type == "response.reasoning_summary_text.delta"]
        response = stream.get_final_response()

    assert summary == ["Six times seven."]
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == "42"


# --- failures after the head -----------------------------------------------------------------


def test_a_cut_chat_tool_call_raises_in_the_sdk_and_is_never_delivered(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(CUT_TOOL, account=account.id)

    received = []
    with pytest.raises(openai.APIError, match="Upstream ended before completing tool_use"):
        for chunk in sdk(gateway).chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WEATHER], stream=True
        ):
            received.append(chunk)

    assert not any(c.choices and c.choices[0].delta.tool_calls for c in received)
    assert not any(c.choices and c.choices[0].finish_reason for c in received)
    record = one_record()
    assert (record.status, record.error_type) == ("error", "tool_json_cut")


def test_a_cut_responses_tool_call_ends_in_response_failed(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(CUT_TOOL, account=account.id)

    with sdk(gateway).responses.stream(model=MODEL, input="Run", tools=[EXEC]) as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()

    assert events[-1].type == "response.failed"
    assert "Upstream ended before completing tool_use" in events[-1].response.error.message
    assert not any(getattr(e, "item", None) and e.item.type == "function_call" for e in events)
    assert one_record().status == "error"


def test_a_broken_upstream_stream_raises_in_the_chat_sdk(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.reset_after(3), account=account.id)

    text = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in sdk(gateway).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)

    assert len(text) == 3  # what came before the break was delivered, then the error
    assert one_record().status == "error"


def test_a_broken_upstream_stream_fails_the_response(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.reset_after(3), account=account.id)

    events = list(sdk(gateway).responses.create(model=MODEL, input="Talk", stream=True))

    assert events[-1].type == "response.failed"
    assert "broke off" in events[-1].response.error.message
    assert "response.completed" not in [e.type for e in events]
    assert one_record().status == "error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_an_upstream_error_frame_mid_stream_ends_in_an_error(gateway, path):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.text("Partial answer") + Script.error_frame(), account=account.id)
    client = sdk(gateway)

    if path == "/v1/chat/completions":
        with pytest.raises(openai.APIError, match="InternalServerException"):
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    else:
        events = list(client.responses.create(model=MODEL, input="Talk", stream=True))
        assert events[-1].type == "response.failed"
        assert "InternalServerException" in events[-1].response.error.message
    record = one_record()
    assert (record.endpoint, record.status, record.error_type) == (
        path,
        "error",
        "upstream_exception",
    )
    assert "InternalServerException" in record.error_message


# --- before the head: failover and JSON errors -----------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_a_stream_fails_over_before_its_first_byte(gateway, path):
    a, account_a = gateway.add_credential(priority=0)
    b, _ = gateway.add_credential(priority=1)
    gateway.fake.script(Script.quota_exhausted(), account=account_a.id)
    client = sdk(gateway)

    if path == "/v1/chat/completions":
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        events = list(client.responses.create(model=MODEL, input="Hello", stream=True))
        assert events[-1].type == "response.completed"
    record = one_record()
    attempts = [(x.credential_id, x.outcome) for x in record.attempts.order_by("attempt")]
    assert attempts == [(a.pk, "quota_exhausted"), (b.pk, "success")]
    assert record.status == "success"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_a_stream_refused_upstream_before_the_head_is_a_json_error(gateway, path):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.improperly_formed(), account=account.id)
    body = {"model": MODEL, "stream": True}
    body |= {"messages": MESSAGES} if path == "/v1/chat/completions" else {"input": "Hello"}

    response = httpx.post(
        gateway.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert "Improperly formed" in response.json()["error"]["message"]
    assert one_record().http_status == 400


def test_a_client_leaving_a_chat_stream_leaves_one_interrupted_record(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.slow("word " * 40, chunks=40, pace=0.1), account=account.id)

    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    bearer = {"Authorization": f"Bearer {gateway.key}"}
    with streaming(gateway, "/v1/chat/completions", body, bearer) as response:
        first = next(response.iter_raw())
    assert b"chat.completion.chunk" in first

    record = one_record()
    assert (record.status, record.error_type) == ("interrupted", "client_disconnected")
    assert record.latency_ms < 3000  # the 4 s upstream stream was cut short


# --- the web-search loop, not live yet ---------------------------------------------------------


def test_a_responses_stream_through_the_web_search_loop_sends_its_head_at_once(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.text("Searched answer.").delayed(PAUSE), account=account.id)

    started = time.monotonic()
    with sdk(gateway).responses.stream(
        model=MODEL, input="News?", tools=[EXEC, WEB_SEARCH]
    ) as stream:
        arrivals = [(time.monotonic() - started, e.type) for e in stream]
        response = stream.get_final_response()

    assert arrivals[0][1] == "response.created" and arrivals[0][0] < PAUSE - 0.3
    assert arrivals[-1][1] == "response.completed" and arrivals[-1][0] >= PAUSE
    assert response.output_text == "Searched answer."
    assert one_record().status == "success"


def test_a_responses_stream_through_the_web_search_loop_keeps_alive_and_shows_the_search(
    gateway,
):
    from credentials.models import GatewaySettings

    GatewaySettings.objects.update_or_create(pk=1, defaults={"stream_ping_interval_secs": 1})
    _, account = gateway.add_credential()
    gateway.fake.script(Script.tool_call("web_search", {"query": "news"}), account=account.id)
    gateway.fake.script(Script.mcp_results(SEARCH_RESULTS).delayed(2.5), route="mcp")
    gateway.fake.script(Script.text("Here is the news."), account=account.id)
    body = {"model": MODEL, "input": "News?", "stream": True, "tools": [EXEC, WEB_SEARCH]}

    raw = httpx.post(
        gateway.base_url + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=30,
    ).content

    assert raw.count(b": keep-alive\n\n") >= 2
    with replaying({"/v1/responses": raw}).responses.stream(
        model=MODEL, input="News?", tools=[EXEC, WEB_SEARCH]
    ) as stream:
        kinds = [e.type for e in stream]
        response = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    assert response.output[0].action.query == "news"
    assert response.output_text == "Here is the news."
    assert one_record().status == "success"


def test_a_web_search_loop_refused_upstream_ends_its_stream_in_response_failed(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.improperly_formed(), account=account.id)

    events = list(
        sdk(gateway).responses.create(
            model=MODEL, input="News?", tools=[EXEC, WEB_SEARCH], stream=True
        )
    )

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert "Improperly formed" in events[-1].response.error.message
    assert [e.sequence_number for e in events] == [0, 1, 2]
    record = one_record()
    assert (record.endpoint, record.http_status) == ("/v1/responses", 400)


def test_a_client_leaving_the_web_search_loop_leaves_one_interrupted_record(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.tool_call("web_search", {"query": "news"}), account=account.id)
    gateway.fake.script(Script.mcp_results(SEARCH_RESULTS).delayed(3), route="mcp")
    body = {"model": MODEL, "input": "News?", "stream": True, "tools": [EXEC, WEB_SEARCH]}

    bearer = {"Authorization": f"Bearer {gateway.key}"}
    with streaming(gateway, "/v1/responses", body, bearer) as response:
        first = next(response.iter_raw())
    assert b"response.created" in first

    record = one_record()
    assert (record.status, record.error_type) == ("interrupted", "client_disconnected")
    assert record.latency_ms < 2500  # the 3 s search was cut short
