"""The agent's own LLM calls (proposal, coding, feedback): see `chat.py`."""

from rdft.llm.chat import ChatLLM, InvalidReply, LLMUnavailable, structured_messages

__all__ = ["ChatLLM", "InvalidReply", "LLMUnavailable", "structured_messages"]
