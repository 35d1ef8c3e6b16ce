"""Process hardening done at start-up."""

from __future__ import annotations

import gc

from saslauth.hardening import freeze_startup_objects


def test_freeze_startup_objects_moves_them_out_of_the_collectors_scans() -> None:
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > before and frozen > 1000  # every module loaded so far, at least
        assert gc.get_count()[0] < 100  # and the young generation starts empty
    finally:
        gc.unfreeze()
