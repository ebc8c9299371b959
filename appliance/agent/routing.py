"""Whether a message is small talk, decided by rules, not by a model.

A conversation with knowledge bases searches them for every message except
greetings, thanks, farewells and acknowledgements. A message is small talk
when every word of it is one of those words (or a name or filler said with
them) and it is short; anything that asks for something ("hi, where is the
VPN profile?") carries a word outside that vocabulary and is searched.
"""

from __future__ import annotations

import re

SMALL_TALK_WORDS = frozenset(
    """hi hello hey hiya howdy yo greetings morning afternoon evening good day night thanks thank thx ty cheers
    much lot lots so very many you all again bye goodbye cya later see soon take care have nice great awesome
    cool perfect excellent wonderful brilliant fantastic ok okay k alright right sure fine yes yeah yep no nope
    got it understood noted appreciate appreciated that's that helps helped helpful how are doing going
    what's up sup well i'm im am fine too and the a for your help there everyone folks bot assistant dear
    welcome np problem worries lol haha oh ah wow please""".split()
)
MAX_SMALL_TALK_WORDS = 8


def is_small_talk(message: str) -> bool:
    words = re.findall(r"[a-z']+|\d+", message.lower().replace("\u2019", "'"))
    if not words or len(words) > MAX_SMALL_TALK_WORDS:
        return not words
    return all(w in SMALL_TALK_WORDS for w in words)
