"""The README's examples are the code we ship and run."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_example_is_examples_quickstart() -> None:
    """The first example in the README is examples/quickstart.py, verbatim."""
    assert BLOCKS[0] == (ROOT / "examples" / "quickstart.py").read_text()


def test_quickstart_runs_and_shows_each_kind_of_call() -> None:
    """The 'see it work' command runs cleanly and shows a miss, hits and a refresh."""
    done = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for label in ("miss", "fresh", "stale", "refreshed"):
        assert label in done.stdout
    assert "stale_hits=1, misses=1, refreshes=1" in done.stdout


def test_readme_testing_example_passes() -> None:
    """The README's FakeClock testing example runs and passes."""
    [block] = [b for b in BLOCKS if "FakeClock()" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    test = namespace["test_price_is_refreshed_after_a_minute"]
    asyncio.run(test())  # type: ignore[operator]
    info = namespace["price"].cache_info()  # type: ignore[attr-defined]
    assert (info.misses, info.stale_hits, info.refreshes) == (1, 1, 1)


def test_readme_testing_example_is_a_pytest_file_that_passes(tmp_path: Path) -> None:
    """Saved as a test file and run by pytest, as a reader would, it passes (once: its
    marker and backend fixture are in the block)."""
    [block] = [b for b in BLOCKS if "FakeClock()" in b]
    (tmp_path / "test_from_readme.py").write_text(block)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
