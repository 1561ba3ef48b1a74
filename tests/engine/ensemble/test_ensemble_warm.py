"""`python -m engine.ensemble.warm`: the Docker images' Numba warm-up, run in-process.

Fast wherever the kernels are cached or already compiled in this process (about 1 s);
from a cold cache it compiles them all once (about 80 s on a 2-core machine), which the
other ensemble tests would pay anyway.
"""

from __future__ import annotations

import re

from engine.ensemble import warm


def test_warm_runs_every_public_function_and_reports(capsys):
    assert warm.main([]) == 0
    line = capsys.readouterr().out.strip()
    match = re.fullmatch(r"warmed engine\.ensemble in (\d+\.\d\d) s: (\d+) kernel signatures compiled, "
                         r"(\d+) loaded from the Numba cache \((.+)\)", line)
    assert match, line
    assert float(match.group(1)) >= 0.0

    # A second warm-up in the same process finds every kernel compiled: nothing to compile
    # or load, so `--require-cached` passes.
    report = warm.warm()
    assert (report.compiled, report.loaded) == (0, 0)
    assert report.seconds < 30.0
    assert warm.main(["--require-cached"]) == 0


def test_dispatchers_cover_the_kernels_the_label_path_calls():
    names = {d.py_func.__name__ for d in warm._dispatchers()}
    assert {"_ensemble_kernel", "average_kernel", "_refine_kernel", "_to_image_kernel"} <= names


def test_require_cached_fails_when_something_compiled(monkeypatch, capsys):
    monkeypatch.setattr(warm, "warm", lambda: warm.WarmReport(12.5, 3, 9, ("/cache",)))
    assert warm.main(["--require-cached"]) == 1
    captured = capsys.readouterr()
    assert "3 kernel signatures compiled, 9 loaded from the Numba cache (/cache)" in captured.out
    assert "3 kernel signatures were compiled" in captured.err
    assert warm.main([]) == 0
