"""Loaded by the schemathesis run in tests/tests/contract.rs (PYTHONPATH).

CPython 3.11 and 3.12 keep the AST constructor's recursion depth in
per-interpreter state, so two threads building ASTs at once corrupt it and
one of them fails with "SystemError: AST constructor recursion depth
mismatch" (python/cpython#106905). Schemathesis' two workers are threads.
Hypothesis parses lambda sources with `ast.parse` to describe its
strategies, and anyio (4.16) builds its lazy-import map on first import with
`compile(..., ast.PyCF_ONLY_AST)`, which a worker triggers mid-run; the
error surfaces as a flaky failure that has nothing to do with medrec. One
lock around the builtin `compile` (which `ast.parse` calls too) serialises
every AST build and nothing else.
"""

import builtins
import threading

_compile = builtins.compile
_lock = threading.RLock()


def _serialised_compile(*args, **kwargs):
    with _lock:
        return _compile(*args, **kwargs)


builtins.compile = _serialised_compile
