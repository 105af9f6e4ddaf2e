"""Which definitions an adapter's ids follow: the values of ``GPartConfig.scheme_version``.

One word throughout the tuner: *the reference* is the paper authors' code,
SamsungLabs/GPart at 320f0c1, whose peft fork defines what every GPart option means (its
``peft/tuners/gpart/grouping.py`` and ``fastfood.py``); *the reference's definitions* are
what schemes 2 and 3 follow, for the random ids, the scales, the block seeds, the
``signed_magnitude`` groups and the Fastfood factors (``follows_reference``). An adapter
records its scheme, and the ids are a function of it:

* **3** (the default for new adapters) and **2**: the reference's definitions. They differ
  only in ``balanced``, this project's extension (the reference has none): scheme 3's is
  stratified (``gpart.tuner.groupings``), scheme 2's a Feistel permutation of the positions
  (``gpart.tuner.legacy``).
* **1**: this project's earlier definitions, from before it adopted the reference's (see
  ``gpart.tuner.legacy``); kept so that adapters saved then reload to their own weights.

A change of definition is a new scheme, never an edit of an old one: the golden ids of
`tests/test_partition.py` and the reference cross-check (`tests/test_official_reference.py`)
pin every scheme, and any change to the hash, the groupings or the scales changes every
saved adapter's meaning.
"""

from __future__ import annotations

SCHEME_LEGACY = 1
SCHEME_REFERENCE = 2  # the first scheme with the reference's definitions
SCHEME_STRATIFIED = 3
SCHEMES = (SCHEME_LEGACY, SCHEME_REFERENCE, SCHEME_STRATIFIED)
# What new adapters get.
SCHEME_CURRENT = SCHEME_STRATIFIED


def follows_reference(scheme: int) -> bool:
    """Whether `scheme` uses the reference's definitions (2 and later: they differ only in
    this project's own ``balanced`` grouping)."""
    return scheme >= SCHEME_REFERENCE
