"""import_off_loop waits for a module another thread is still importing (the supervisor's preload)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types

from stigmer.stack import component


def test_a_module_being_imported_elsewhere_is_waited_for() -> None:
    name = "stigmer_test_half_imported"
    half = types.ModuleType(name)  # in sys.modules, not yet initialized: as mid-import
    started, done = threading.Event(), threading.Event()

    def importer() -> None:
        with component._IMPORT_LOCK:
            sys.modules[name] = half
            started.set()
            time.sleep(0.5)
            half.ready = True  # type: ignore[attr-defined]
            done.set()

    t = threading.Thread(target=importer)
    t.start()
    try:
        started.wait(5)
        asyncio.run(component.import_off_loop(name))
        assert done.is_set() and half.ready  # type: ignore[attr-defined]
    finally:
        t.join()
        sys.modules.pop(name, None)


def test_loaded_modules_cost_no_thread() -> None:
    t0 = time.monotonic()
    asyncio.run(component.import_off_loop("json", "os"))
    assert time.monotonic() - t0 < 1
