"""`genzoo` with the tests' models registered, for launching under torchrun."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genzoo.cli import main  # noqa: E402
from helpers import register_test_models  # noqa: E402

register_test_models()
sys.exit(main())
