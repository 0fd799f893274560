"""Image limits from the environment (KIRO_RS_IMAGE_*, checklist item 169)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def send_image(gateway, data: str) -> dict:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": data},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    }
    response = httpx.post(
        gateway.base_url + "/v1/messages", json=body, headers={"x-api-key": gateway.key}, timeout=30
    )
    assert response.status_code == 200, response.text[:300]
    sent = json.loads(gateway.fake.requests_for("chat")[-1].body)
    (image,) = sent["conversationState"]["currentMessage"]["userInputMessage"]["images"]
    return image


def sent_size(image: dict) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(image["source"]["bytes"]))).size


@pytest.mark.parametrize(("long_side", "expected"), [(1568, (1200, 600)), (300, (300, 150))])
def test_the_long_side_limit_comes_from_the_environment(gateway, settings, long_side, expected):
    settings.KIRO_IMAGE_MAX_LONG_SIDE = long_side
    gateway.add_credential()

    image = send_image(gateway, png(1200, 600))

    assert sent_size(image) == expected
    assert image["format"] == ("png" if long_side == 1568 else "jpeg")


def test_resize_off_sends_the_image_unchanged(gateway, settings):
    settings.KIRO_IMAGE_RESIZE = False
    settings.KIRO_IMAGE_MAX_LONG_SIDE = 300
    gateway.add_credential()
    data = png(1200, 600)

    image = send_image(gateway, data)

    assert image["source"]["bytes"] == data
