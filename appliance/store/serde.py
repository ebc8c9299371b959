"""The checkpoints' serializer: LangGraph's, with a fast way back to messages.

Every turn and every state read rebuilds the conversation's window (up to a
few hundred messages) from msgpack. LangGraph's decoder looks each message's
class up by module and name and validates its fields again through pydantic:
about two thirds of a read's CPU went there. A message is written as its
``model_dump()``, so one whose fields are exactly its class's was valid when
it was written: it is rebuilt from a class table without validating it
again, as pydantic's ``model_construct`` builds a model (its four slots set
directly, which is three times faster than ``model_construct`` itself).
Anything else (another class, a message written by another version of
LangChain with other fields) takes LangGraph's own path.
"""

from __future__ import annotations

from typing import Any

import ormsgpack
from langchain_core import messages as lc
from langgraph.checkpoint.serde.jsonplus import EXT_DELTA_SNAPSHOT, EXT_PYDANTIC_V2, JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot

_MESSAGE_CLASSES = (
    lc.HumanMessage,
    lc.AIMessage,
    lc.SystemMessage,
    lc.ToolMessage,
    lc.ChatMessage,
    lc.FunctionMessage,
    lc.RemoveMessage,
)
# (module, name) as the encoder writes them -> the class and its fields.
_MESSAGES = {(cls.__module__, cls.__name__): (cls, frozenset(cls.model_fields)) for cls in _MESSAGE_CLASSES}
_OPTIONS = ormsgpack.OPT_NON_STR_KEYS
_set = object.__setattr__


def _built(cls: type[lc.BaseMessage], fields: dict[str, Any]) -> lc.BaseMessage:
    """What ``cls.model_construct(**fields)`` builds when ``fields`` are exactly the
    class's own (these classes have no private attributes and no post-init hook)."""
    message = cls.__new__(cls)
    _set(message, "__dict__", fields)
    _set(message, "__pydantic_fields_set__", set(fields))
    _set(message, "__pydantic_extra__", {})
    _set(message, "__pydantic_private__", None)
    return message


class CheckpointSerializer(JsonPlusSerializer):
    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, payload = data
        if type_ != "msgpack":
            return super().loads_typed(data)
        return ormsgpack.unpackb(payload, ext_hook=self._ext_hook, option=_OPTIONS)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_PYDANTIC_V2:
            module, name, fields, *_ = ormsgpack.unpackb(data, ext_hook=self._ext_hook, option=_OPTIONS)
            known = _MESSAGES.get((module, name))
            if known and isinstance(fields, dict) and fields.keys() == known[1]:
                return _built(known[0], fields)
        elif code == EXT_DELTA_SNAPSHOT:  # the window itself: its messages come through here too
            return _DeltaSnapshot(ormsgpack.unpackb(data, ext_hook=self._ext_hook, option=_OPTIONS))
        # Everything else as LangGraph reads it (its checks of which classes may be built included).
        return super().loads_typed(("msgpack", ormsgpack.packb(ormsgpack.Ext(code, data))))
