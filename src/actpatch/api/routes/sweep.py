"""POST /sweep and the /sweep/jobs routes: every cell of a component, now or in the background."""

from __future__ import annotations

from typing import Any

from fastapi import status

from ..deps import WorkbenchDep
from ..responses import WITH_BODY, documented
from ..routing import make_router
from ..schemas.sweep import SweepJob, SweepRequest, SweepResponse

router = make_router(tags=["patching"])
JOB = documented(404)


@router.post("/sweep", response_model=SweepResponse, responses=WITH_BODY)
def sweep(request: SweepRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Patch every cell of a component and return the metric after each patch."""
    return workbench.sweep(request)


@router.post(
    "/sweep/jobs",
    response_model=SweepJob,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(413, 422, 429, 503),
)
def start_sweep_job(request: SweepRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Start a sweep in the background; poll its id for progress and the result."""
    return workbench.start_sweep(request).to_dict()


@router.get("/sweep/jobs/{job_id}", response_model=SweepJob, responses=JOB)
def get_sweep_job(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
    """A background sweep's progress (done of total cells), and its result once done."""
    return workbench.jobs.get(job_id).to_dict()


@router.delete("/sweep/jobs/{job_id}", response_model=SweepJob, responses=JOB)
def cancel_sweep_job(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
    """Cancel a background sweep; it stops within one batch of cells."""
    return workbench.jobs.cancel(job_id).to_dict()
