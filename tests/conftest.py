import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

# compiled code from the tests goes to a private cache folder, not the user's
os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-test-cache-"))
