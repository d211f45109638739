"""Caption and image kinds, the label of each (caption kind, image kind) pair, and the class mix."""

from __future__ import annotations

from mmtune.sarcasm import IMAGE, MULTI, NOT, TEXT

POS, NEG, NEUTRAL, IRONIC = "pos", "neg", "neutral", "ironic"
KINDS = (POS, NEG, NEUTRAL, IRONIC)

LABEL_RULES: dict[tuple[str, str], str] = {
    (POS, POS): NOT,
    (NEG, NEG): NOT,
    (NEUTRAL, NEUTRAL): NOT,
    (POS, NEG): MULTI,
    (NEG, POS): MULTI,
    (IRONIC, IRONIC): MULTI,
    (IRONIC, NEUTRAL): TEXT,
    (NEUTRAL, IRONIC): IMAGE,
}

# The real data is 56/39/4/0.7; the demo over-samples the rare classes so they can be learned.
LABEL_SHARES: dict[str, float] = {NOT: 0.55, MULTI: 0.36, IMAGE: 0.06, TEXT: 0.03}
# (caption kind, image kind) mix inside each label.
LABEL_COMBOS: dict[str, tuple[tuple[tuple[str, str], float], ...]] = {
    NOT: (((POS, POS), 0.44), ((NEG, NEG), 0.44), ((NEUTRAL, NEUTRAL), 0.12)),
    MULTI: (((POS, NEG), 0.46), ((NEG, POS), 0.46), ((IRONIC, IRONIC), 0.08)),
    TEXT: (((IRONIC, NEUTRAL), 1.0),),
    IMAGE: (((NEUTRAL, IRONIC), 1.0),),
}

# Scene theme of a pos/neg image -> topic of the caption written about it.
THEME_TOPIC = {"weather": "weather", "food": "food", "face": "life", "battery": "battery", "signal": "signal"}
TOPIC_THEME = {topic: theme for theme, topic in THEME_TOPIC.items()}
TOPICS = tuple(TOPIC_THEME)
