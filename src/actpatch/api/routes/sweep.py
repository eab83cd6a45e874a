"""POST /sweep and the /sweep/jobs routes: every cell of a component, now or in the background."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import COMPUTE_LIMITED
from ..routing import JobRoutes, add_job_routes, make_router
from ..schemas.sweep import SweepJob, SweepRequest, SweepResponse
from ..workbench import Workbench

router = make_router(tags=["patching"])


@router.post("/sweep", response_model=SweepResponse, responses=COMPUTE_LIMITED)
def sweep(request: SweepRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Patch every cell of a component and return the metric after each patch."""
    return workbench.sweep_now(request)


add_job_routes(
    router,
    JobRoutes(
        name="sweep",
        request=SweepRequest,
        job=SweepJob,
        start=Workbench.start_sweep,
        jobs=lambda workbench: workbench.jobs,
        start_says="Start a sweep in the background; poll its id for progress and the result.",
        get_says="A background sweep's progress (done of total cells), and its result once done.",
        cancel_says="Cancel a background sweep; it stops within one batch of cells.",
    ),
)
