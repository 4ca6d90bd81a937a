"""Loaded by the schemathesis run in tests/tests/contract.rs (PYTHONPATH).

CPython 3.11 and 3.12 keep the AST constructor's recursion depth in
per-interpreter state, so two threads building ASTs at once corrupt it and
one of them fails with "SystemError: AST constructor recursion depth
mismatch" (python/cpython#106905). Schemathesis' two workers are threads,
and Hypothesis parses lambda sources with `ast.parse` to describe its
strategies; the error surfaces as a flaky "Inconsistent results" that has
nothing to do with medrec. One lock around `ast.parse` serialises the
parses and nothing else.
"""

import ast
import threading

_parse = ast.parse
_lock = threading.Lock()


def _serialised_parse(*args, **kwargs):
    with _lock:
        return _parse(*args, **kwargs)


ast.parse = _serialised_parse
