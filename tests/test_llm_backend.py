"""The agent's chat model (rdft.llm) against an OpenAI-compatible server on 127.0.0.1, and the
trace's parent choice."""

import json

import pytest
from llm_server import LLMServer, Status
from pydantic import BaseModel

from rdft.llm import ChatLLM, InvalidReply, LLMUnavailable
from rdft.loop.trace import Node, Trace
from rdft.settings import Settings

KEY = "sk-backend-secret-14142135"


class Choice(BaseModel):
    answer: int


def settings(server, tmp_path, **values) -> Settings:
    base = {"chat_model": "openai/agent", "openai_api_base": server.base_url, "openai_api_key": KEY,
            "retry_wait_seconds": 0.01, "ft_file_path": tmp_path}  # fmt: skip
    return Settings(_env_file=None, **{**base, **values})


def test_retries_streaming_think_removal_and_reask(tmp_path):
    replies = iter(
        [Status(503), "<think>let me think</think> The answer is forty-two.", '```json\n{"answer": 42}\n```']
    )
    with LLMServer(lambda body: next(replies)) as server:
        records = []
        llm = ChatLLM(settings(server, tmp_path, max_retry=2), chat_log=records.append)
        assert llm.structured([{"role": "user", "content": "6*7?"}], Choice, purpose="test").answer == 42
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 3 and all(b["stream"] for b in bodies)  # CHAT_STREAM is on by default
    # The invalid reply was shown back with the validation error, without its <think> part.
    reask = bodies[2]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "The answer is forty-two."}
    assert "not valid" in reask[-1]["content"]
    assert [r["purpose"] for r in records] == ["test", "test"] and "messages" in records[0]
    assert KEY not in json.dumps(records)


def test_cache_penalties_and_content_logging(tmp_path):
    with LLMServer(lambda body: '{"answer": 1}') as server:
        values = {"dump_chat_cache": True, "use_chat_cache": True, "chat_stream": False, "chat_temperature": 0.3,
                  "chat_presence_penalty": 0.5, "log_llm_chat_content": False}  # fmt: skip
        records = []
        first = ChatLLM(settings(server, tmp_path, **values), chat_log=records.append)
        assert first.structured([{"role": "user", "content": "q"}], Choice, purpose="p").answer == 1
        again = ChatLLM(settings(server, tmp_path, **values), chat_log=records.append)
        assert again.structured([{"role": "user", "content": "q"}], Choice, purpose="p").answer == 1
    assert len(server.requests) == 1  # the rerun came from FT_FILE_PATH/chat-cache
    body = server.requests[0]["body"]
    assert body["temperature"] == 0.3 and body["presence_penalty"] == 0.5 and not body.get("stream")
    assert [r["cached"] for r in records] == [False, True]
    assert all("messages" not in r and "reply" not in r for r in records)  # LOG_LLM_CHAT_CONTENT=false
    for path in (tmp_path / "chat-cache").rglob("*.json"):
        assert KEY not in path.read_text()


def test_outages_and_invalid_replies_raise_after_their_budget(tmp_path):
    with LLMServer(lambda body: Status(500)) as server:
        with pytest.raises(LLMUnavailable, match=r"kept failing \(InternalServerError\) after 3 tries"):
            ChatLLM(settings(server, tmp_path, max_retry=2)).complete([{"role": "user", "content": "q"}])
        assert len(server.requests) == 3
    with LLMServer(lambda body: Status(401)) as server:
        with pytest.raises(LLMUnavailable, match="refused the request") as refused:
            ChatLLM(settings(server, tmp_path)).complete([{"role": "user", "content": "q"}])
        assert len(server.requests) == 1 and KEY not in str(refused.value)
    with LLMServer(lambda body: "no json here") as server:
        with pytest.raises(InvalidReply, match="never validated"):
            ChatLLM(settings(server, tmp_path, rdft_llm_reask=1)).structured(
                [{"role": "user", "content": "q"}], Choice, purpose="p"
            )
        assert len(server.requests) == 2


def test_parent_choice_greedy_and_aide():
    trace = Trace(baseline_validation=0.1)
    assert trace.choose_parent("greedy", 1) == (None, "draft")
    trace.nodes.append(Node(loop=1, parent=None, kind="draft", status="done", validation=0.3, confirmed=True))
    trace.nodes.append(Node(loop=2, parent=1, kind="improve", status="failed", error_type="oom"))
    assert trace.choose_parent("greedy", 3) == (1, "improve")
    assert trace.best().loop == 1 and trace.confirmed_best().loop == 1
    # AIDE: a second draft first, then debugging the failed node, then improving the best.
    assert trace.choose_parent("aide", 3) == (None, "draft")
    trace.nodes.append(Node(loop=3, parent=None, kind="draft", status="done", validation=0.2))
    assert trace.choose_parent("aide", 5) == (2, "debug")
    trace.nodes.append(Node(loop=5, parent=2, kind="debug", status="done", validation=0.25))
    assert trace.choose_parent("aide", 7) == (1, "improve")
