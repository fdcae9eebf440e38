"""Checking a bundle before anything of it runs: below both ``pipeline.inference`` (which runs a bundle only after
these checks) and ``pipeline.bundle_sharing`` (pack, verify, ship), importing neither.

* :mod:`.config_allowlist`: configs parsed, never evaluated, against an allow-list of wiring;
* :mod:`.carried_code`: the code a segmentation bundle carries in ``scripts/``, generated from the packages, and
  the check that a bundle carries exactly that;
* :mod:`.trust`: both checks and ``logging.conf`` in one list of problems (:func:`~.trust.require_safe_bundle`),
  and the bundle's ``scripts/`` made importable.
"""
