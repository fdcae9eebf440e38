"""Subcommands of ``dmg``: each module has ``register(subparsers)`` that sets ``func``."""

from . import bundle, check_cohort, demo, evaluate, segment, status, synth

COMMANDS = (demo, synth, check_cohort, evaluate, segment, status, bundle)
