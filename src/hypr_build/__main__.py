"""`python -m hypr_build --out DIR`."""

import sys

from hypr_build.main import main

sys.exit(main())
