"""bench/slack.py in its tiny mode, so it keeps working (figures are in bench/RESULTS.md; nothing
here asserts a speed)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_slack_bench_quick_answers_every_command():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "slack.py"), "--quick"], capture_output=True,
                          text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for figure in ("/what-happened <32-hex ID>, 1,000-step run", "/what-happened <8-hex prefix>, 1,000-step run",
                   "/what-happened recent (10 runs)"):
        assert figure in done.stdout, done.stdout
