"""`python -m actpatch.cli`: the `actpatch` command."""

import sys

from actpatch.cli import main

sys.exit(main())
