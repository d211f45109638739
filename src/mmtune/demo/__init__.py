"""Synthetic ViMMSD-style demo data: Vietnamese meme posts whose label needs both modalities.

Every post has a caption *kind* and an image *kind*, each one of `pos`, `neg`, `neutral`, `ironic`:

- images: `pos` scenes are bright and happy (sunny field, full plate, smiling face, full battery,
  strong wifi), `neg` scenes dark and sad (storm with rain, empty plate, crying face, empty battery,
  no signal), `neutral` scenes muted and moodless (clock, calendar, office building), `ironic` scenes
  contradict themselves (a grinning sun in a storm, a smiling face among flames, an
  "expectation vs reality" split panel, a crying face under a bright sun).
- captions: `pos` / `neg` captions claim something good / bad about the pictured situation (same
  topic as the scene), `neutral` captions only describe, `ironic` captions are sarcastic on their own
  (praise for a bad event: "Tuyệt vời, lại mất điện đúng giờ thi 🙃").

The label follows `LABEL_RULES`:

    caption  image    label
    pos      pos      not-sarcasm
    neg      neg      not-sarcasm
    neutral  neutral  not-sarcasm
    pos      neg      multi-sarcasm   (the caption contradicts the picture)
    neg      pos      multi-sarcasm
    ironic   ironic   multi-sarcasm   (both sarcastic: the two-bit view of labels.py)
    ironic   neutral  text-sarcasm
    neutral  ironic   image-sarcasm

Every caption kind and every image kind occurs under two labels, so neither modality alone decides
any class (the best single-modality guess is right on ~60% of posts).

Like the real data: ~23% of train captions are shared (some groups with conflicting labels), a few
images are reused byte for byte or re-encoded / resized, test captions are about half as long, and
`LEAKED_TEST_POSTS` test posts copy a train post. `inject_faults` adds the faults listed in `FAULTS`.
Generation is deterministic by seed; `_generate_specs` gives the per-post spec (kinds, scenes,
faults) before rendering, which the tests use to check the rules.

Modules: `rules` (kinds, label rules, class mix), `captions` (Vietnamese templates and caption
styling), `scenes` (the PIL drawings), `specs` (the per-post plan: kinds, labels, duplicates,
leaks, faults) and `writer` (rendering the images and writing the files).
"""

from __future__ import annotations

from mmtune.demo.rules import (
    IRONIC,
    KINDS,
    LABEL_COMBOS,
    LABEL_RULES,
    LABEL_SHARES,
    NEG,
    NEUTRAL,
    POS,
    THEME_TOPIC,
)
from mmtune.demo.specs import (
    FAULTS,
    LEAKED_TEST_POSTS,
    _generate_specs,
    _ImageSpec,
    _PostSpec,
    _Specs,
    fault_counts,
)
from mmtune.demo.writer import DemoData, make_demo_data

__all__ = [
    "DemoData", "make_demo_data", "LABEL_RULES", "LABEL_SHARES", "LABEL_COMBOS", "LEAKED_TEST_POSTS", "FAULTS",
    "fault_counts", "KINDS", "POS", "NEG", "NEUTRAL", "IRONIC", "THEME_TOPIC",
    "_generate_specs", "_ImageSpec", "_PostSpec", "_Specs",
]
