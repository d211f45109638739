"""`rules`: the blend named by the rules file's `base:`, then its priority rules (ensemble/rules.py), scored on OOF."""

from mmtune.ensemble.methods import Method

METHOD = Method(build=None, needs_gold=True)
