import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fake_engine import main  # noqa: E402

main("sglang", sys.argv[1:])
