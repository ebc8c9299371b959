"""Conversation windows this process has rebuilt, kept for the next read.

A ``DeltaChannel`` (the state's messages) is rebuilt by replaying every write
since its last snapshot, up to SNAPSHOT_EVERY of them over a window of a few
hundred messages: on a long thread about a sixth of a turn's CPU went to
rebuilding the window the turn before had just held. The last value rebuilt
of each thread's channel is kept with its version, and the next read whose
checkpoint's chain passes that version starts from it, replaying only the
writes after it. A run also leaves its final state as the window of its last
checkpoint (``writes_with_next_checkpoint``), so the thread's next turn in
the same process reads none of its conversation back.

A version names one value for good: LangGraph gives each new version a random
suffix (``get_next_version``), and a channel's rows are never rewritten under
the same version. So a kept value is right for any checkpoint, fork or process
that shows that version, and needs no invalidation. The threads read least
recently are dropped past ``size``. Kept lists are never handed out, only
copies: a node that changed its state's list in place must not change the
next turn's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# Whose window: (thread_id, checkpoint_ns, channel).
Channel = tuple[str, str, str]


class Windows:
    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._kept: OrderedDict[Channel, tuple[str, Any]] = OrderedDict()

    def get(self, channel: Channel) -> tuple[str, Any] | None:
        """The version kept of ``channel`` and its value, if one is kept."""
        kept = self._kept.get(channel)
        if kept is not None:
            self._kept.move_to_end(channel)
        return kept

    def version(self, channel: Channel) -> str | None:
        """The version kept of ``channel``, if one is kept."""
        kept = self.get(channel)
        return None if kept is None else kept[0]

    def keep(self, channel: Channel, version: str, value: Any) -> None:
        self._kept[channel] = (version, value)
        self._kept.move_to_end(channel)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def forget_thread(self, thread_id: str) -> None:
        """A deleted thread's windows (its versions come back only through a restore, with the same values)."""
        for channel in [c for c in self._kept if c[0] == thread_id]:
            del self._kept[channel]
