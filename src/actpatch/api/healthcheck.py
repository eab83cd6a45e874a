"""`python -m actpatch.api.healthcheck`: exit 0 when the local server answers GET /health.

The container's HEALTHCHECK runs it inside the container: it asks 127.0.0.1 on the server's
port (ACTPATCH_PORT, else 8000), with the API token when one is set (ACTPATCH_API_TOKEN), and
needs nothing but the standard library. A `degraded` server (one whose run history was left
aside, say) is healthy here: it computes and answers, and a restart would not mend what is
wrong; its /health and its log say what is.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def healthy(port: int, token: str | None = None, timeout: float = 5.0) -> bool:
    """Whether http://127.0.0.1:port/health answers 200 with status "ok" or "degraded"."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = json.load(response).get("status")
            return response.status == 200 and status in ("ok", "degraded")
    except (OSError, ValueError):
        return False


def main() -> int:
    port = int(os.environ.get("ACTPATCH_PORT") or 8000)
    return 0 if healthy(port, os.environ.get("ACTPATCH_API_TOKEN") or None) else 1


if __name__ == "__main__":
    sys.exit(main())
