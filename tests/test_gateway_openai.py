"""The gateway's OpenAI-compatible endpoints, called by the official ``openai`` package against a
real daemon, its gateway and real runners: chat and completions, streamed and not, the method a
model declares (or the only one that fits), sampling arguments passed through, errors, access."""

from __future__ import annotations

import httpx
import openai
import pytest
from daemon_helpers import isolated_home, wait_for

from jupyter_deploy import Client

pytestmark = pytest.mark.timeout(180)

# Declares its chat and completion methods; streams, and takes the sampling arguments.
CHAT_MODEL = '''
from typing import Iterator, Optional

from jupyter_deploy import ModelClass


class Parrot(ModelClass):
    @ModelClass.method(openai="chat")
    def chat(self, messages: list[dict], max_tokens: int = 16, temperature: float = 1.0,
             stop: Optional[list[str]] = None) -> Iterator[str]:
        if messages[-1]["content"] == "fail":
            raise RuntimeError("no")
        words = messages[-1]["content"].split()[:max_tokens]
        for word in words:
            if stop and word in stop:
                return
            yield word + " "
        yield f"(t={temperature})"

    @ModelClass.method(openai="completion")
    def complete(self, prompt: str, seed: int = 0) -> str:
        return prompt[::-1] + f" seed={seed}"

    @ModelClass.method
    def other(self, messages: list[dict]) -> str:
        return "not this one"
'''

# Declares nothing: its only method with `messages` serves chat; it has no completion method.
PLAIN_MODEL = '''
from jupyter_deploy import ModelClass


class Plain(ModelClass):
    @ModelClass.method
    def reply(self, messages: list[dict]) -> str:
        return " | ".join(f"{m['role']}:{m['content']}" for m in messages)

    @ModelClass.method
    def shout(self, text: str) -> str:
        return text.upper()
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from conftest import write_model

    with isolated_home(tmp_path_factory, "gateway_openai") as home:
        client = Client()
        for source, model_id in ((CHAT_MODEL, "parrot"), (PLAIN_MODEL, "plain")):
            folder = write_model(tmp_path_factory.mktemp(model_id), source, model_id=model_id)
            client.deploy(folder, autoscale_config={"min_replicas": 1})
        _, bob_token = client.create_user("bob")
        url = client.gateway_url
        wait_for(lambda: httpx.get(url + "/v2/health/live", timeout=2).status_code == 200, 30, "the gateway")
        token = (home / "local.token").read_text().strip()
        yield {"client": client, "url": url, "token": token, "bob": bob_token,
               "openai": openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0)}
        client.close()


def test_chat_completions(env):
    oa = env["openai"]
    done = oa.chat.completions.create(model="parrot", messages=[{"role": "user", "content": "hello big world"}],
                                      max_tokens=2, temperature=0.5)
    assert done.object == "chat.completion" and done.model == "parrot"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == "hello big (t=0.5)"  # a streaming method's chunks, joined
    assert done.choices[0].finish_reason == "stop"
    # The model path names it too; `stop` as one string reaches a list[str] parameter.
    done = oa.chat.completions.create(model="local/default/parrot", stop="big",
                                      messages=[{"role": "user", "content": "hello big world"}])
    assert done.choices[0].message.content == "hello "


def test_chat_streams_chunk_by_chunk(env):
    stream = env["openai"].chat.completions.create(
        model="parrot", stream=True, messages=[{"role": "user", "content": "one two three"}])
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(d for d in deltas if d) == "one two three (t=1.0)"
    assert [d for d in deltas if d][:3] == ["one ", "two ", "three "]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    # The raw stream ends with [DONE].
    with httpx.stream("POST", env["url"] + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {env['token']}"},
                      json={"model": "parrot", "stream": True, "messages": [{"role": "user", "content": "a"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_completions_streamed_and_not(env):
    oa = env["openai"]
    done = oa.completions.create(model="parrot", prompt="abc", seed=7)
    assert done.object == "text_completion" and done.choices[0].text == "cba seed=7"
    chunks = list(oa.completions.create(model="parrot", prompt="xy", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "yx seed=0"


def test_a_model_without_declarations_serves_chat_with_its_only_messages_method(env):
    oa = env["openai"]
    done = oa.chat.completions.create(model="plain", messages=[{"role": "system", "content": "be brief"},
                                                               {"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "system:be brief | user:hi"
    stream = oa.chat.completions.create(model="plain", stream=True, messages=[{"role": "user", "content": "x"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "user:x"  # a unary method, one chunk
    with pytest.raises(openai.BadRequestError, match="no method for completion"):
        oa.completions.create(model="plain", prompt="x")


def test_models_errors_and_access(env):
    oa = env["openai"]
    assert {m.id for m in oa.models.list()} == {"parrot", "plain"}
    assert oa.models.retrieve("parrot").owned_by == "local"
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="nothere", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        oa.chat.completions.create(model="parrot", messages=[])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=env["url"] + "/v1", api_key="wrong", max_retries=0).models.list()
    bob = openai.OpenAI(base_url=env["url"] + "/v1", api_key=env["bob"], max_retries=0)
    assert list(bob.models.list()) == []
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model="parrot", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model="local/default/parrot", messages=[{"role": "user", "content": "x"}])


def test_a_model_error_is_a_server_error_with_its_message(env):
    r = httpx.post(env["url"] + "/v1/chat/completions", timeout=30,
                   headers={"Authorization": f"Bearer {env['token']}"},
                   json={"model": "parrot", "messages": [{"role": "user", "content": "fail"}]})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "RuntimeError: no" and "Traceback" not in r.text
    with httpx.stream("POST", env["url"] + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {env['token']}"},
                      json={"model": "parrot", "stream": True,
                            "messages": [{"role": "user", "content": "fail"}]}) as r:
        assert r.status_code == 500  # it failed before its first chunk: an ordinary error response


def test_openai_declarations_are_checked_when_the_model_is_read():
    from jupyter_deploy import ModelClass
    from jupyter_deploy.errors import ModelDefinitionError

    with pytest.raises(ModelDefinitionError, match="takes 'chat' or 'completion'"):
        ModelClass.method(openai="embeddings")

    class NoMessages(ModelClass):
        @ModelClass.method(openai="chat")
        def chat(self, text: str) -> str:
            return text

    with pytest.raises(ModelDefinitionError, match=r"chat\(\) \(openai='chat'\): needs a parameter 'messages'"):
        NoMessages.method_specs()

    class NotText(ModelClass):
        @ModelClass.method(openai="completion")
        def complete(self, prompt: str) -> int:
            return 1

    with pytest.raises(ModelDefinitionError, match="must return str or Iterator"):
        NotText.method_specs()
