"""Where the tests find their data: everything lives inside the repository, nothing beside it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]                      # the repository
FIXTURES = ROOT / "tests" / "fixtures" / "audiocraft_tiny"      # written by audiocraft 1.3.0 (see its README)
T5_TINY = FIXTURES / "t5_tiny"
