"""A small, made-up SMS collection for grading mode and offline demos.

Grading mode must run anywhere without a download, so it trains and evaluates on these
messages instead of the SMS Spam Collection. They are written for this pack (not taken from
the collection) and only need to look like the real task: short ham chats, spam offers.
"""

from __future__ import annotations

from itertools import product

import pandas as pd

_HAM_OPENINGS = ["Hey", "Hi mum", "Ok", "Sorry", "Morning", "Hi", "Yo", "Thanks"]
_HAM_BODIES = [
    "are we still on for dinner tonight?",
    "I'll be home late, keep some food for me",
    "can you pick up milk on the way back",
    "the bus is stuck in traffic, see you at 7",
    "did you get my message about the weekend",
    "call me when you finish work",
    "I left my keys at yours, will grab them tomorrow",
    "happy birthday! have a great day",
]
_SPAM_OPENINGS = ["URGENT!", "Congratulations!", "FREE entry:", "WINNER!", "Final notice:",
                  "You have been selected!", "Claim now:", "Exclusive offer:"]
_SPAM_BODIES = [
    "you have won a 1000 cash prize, call 09061701461 to claim",
    "reply WIN to 80086 for a free holiday, T&Cs apply",
    "your mobile is due a free upgrade, text YES to 85023",
    "a 2000 award is waiting, claim code X49 at www.prize-now.example",
    "get 50% off ringtones, txt TONE to 87121, 1.50 per msg",
    "your account won a weekly draw, send your details to collect",
    "free camera phone with every new contract, call 0800 123 456",
    "you are our lucky winner of a luxury cruise, call now",
]


def sample_sms_collection(per_class: int = 64) -> pd.DataFrame:
    """`per_class` ham and `per_class` spam messages, columns Label ('ham'/'spam') and Text."""
    if not 1 <= per_class <= 64:
        raise ValueError(f"per_class must be between 1 and 64, got {per_class}.")
    ham = [f"{a} {b}" for a, b in product(_HAM_OPENINGS, _HAM_BODIES)][:per_class]
    spam = [f"{a} {b}" for a, b in product(_SPAM_OPENINGS, _SPAM_BODIES)][:per_class]
    rows = [("ham", text) for text in ham] + [("spam", text) for text in spam]
    return pd.DataFrame(rows, columns=["Label", "Text"])
