"""``examples/quickstart.py`` runs and shows a location, a user, a contact and a booking."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart.py"


def test_quickstart_runs_and_prints_what_it_made() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(
        r"^location: sydney \(Avatar Imaging Sydney, Australia/Sydney\) id=\w+$", out, re.M
    )
    assert "user:     reception.sydney@avatar-imaging.example as receptionist at sydney" in out
    assert re.search(
        r"^contact:  Jane Citizen <jane\.citizen@example\.com> \+61412345678 id=\w+$", out, re.M
    )
    assert re.search(r"^booking:  MRI 2026-03-04T09:00:00\+00:00 \[pending\] id=\w+$", out, re.M)
    assert "127.0.0.1 allowed=True, 203.0.113.9 allowed=False" in out
    assert "denied:   readonly may not create bookings" in out
    assert "CREATE booking denied" in out
    assert "chain:    sydney: 7 entries, ok" in out
    assert result.stderr == ""
