"""Whether a message is small talk, decided by rules, not by a model.

A conversation with knowledge bases searches them for every message except
greetings, thanks, farewells and acknowledgements. A message is small talk
when it is short and every word of it is one of those words, or when it opens
with a greeting or thanks and asks nothing ("Hello, my name is Lin"). A
message that asks ("hi, where is the VPN profile?", "thanks, and how do I
print?") is searched.
"""

from __future__ import annotations

import re

SMALL_TALK_WORDS = frozenset(
    """hi hello hey hiya howdy yo greetings morning afternoon evening good day night thanks thank thx ty cheers
    much lot lots so very many you all again bye goodbye cya later see soon take care have nice great awesome
    cool perfect excellent wonderful brilliant fantastic ok okay k alright right sure fine yes yeah yep no nope
    got it understood noted appreciate appreciated that's that helps helped helpful how are doing going
    what's up sup well i'm im am fine too and the a for your help there everyone folks bot assistant dear
    welcome np problem worries lol haha oh ah wow please today tonight""".split()
)
OPENERS = frozenset("hi hello hey hiya howdy greetings morning afternoon evening thanks thank thx cheers".split())
ASKING_WORDS = frozenset(
    "what what's where when who whom whose which why how tell explain show find give list need want".split()
)
MAX_SMALL_TALK_WORDS = 8
MAX_INTRODUCTION_WORDS = 16


def is_small_talk(message: str) -> bool:
    words = re.findall(r"[a-z']+|\d+", message.lower().replace("\u2019", "'"))
    if not words:
        return True
    if len(words) <= MAX_SMALL_TALK_WORDS and all(w in SMALL_TALK_WORDS for w in words):
        return True
    opens = words[0] in OPENERS or words[:2] == ["good", "morning"]
    asks = "?" in message or any(w in ASKING_WORDS for w in words[1:])
    return opens and not asks and len(words) <= MAX_INTRODUCTION_WORDS
