"""What a serving process does once it has loaded, before its first request or message.

The garbage collector's full passes walk every object the process tracks, and most of them are
what it loaded at start-up (Django, the URL patterns, the integrations' SDKs), alive as long as
the process. A request that allocates a lot, the whole record of a 1,000-step run or its
integrity check, sets off such a pass: in `make bench` those pages' p95 was twice their median,
and with the collector off it was not (docs/benchmarks.md). `gc.freeze()` moves everything
alive at that moment into a generation the collector never walks, which is what CPython's
documentation advises for long-running servers; frozen objects are still freed by reference
counting, they are only left out of the search for cycles.
"""

import gc

from django.urls import get_resolver


def freeze_loaded_objects() -> None:
    """Load every view now (not on the first request), then take what is loaded out of the
    collector's full passes. Called by rapidfolio/wsgi.py, `manage.py serve` and each
    rundramatiq worker."""
    _ = get_resolver().url_patterns  # imports every URLconf and view module
    gc.collect()
    gc.freeze()
