"""POST /attribute and /attribute/jobs: attribution patching, now or in the background."""

from __future__ import annotations

from typing import Any

from fastapi import status

from ..deps import WorkbenchDep
from ..responses import WITH_BODY, documented
from ..routing import make_router
from ..schemas.attribute import AttributeJob, AttributeRequest, AttributeResponse

router = make_router(tags=["attribution"])
JOB = documented(404)


@router.post("/attribute", response_model=AttributeResponse, responses=WITH_BODY)
def attribute(request: AttributeRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Estimate every cell of a component by attribution patching (AtP, AtP*)."""
    return workbench.attribute(request)


@router.post(
    "/attribute/jobs",
    response_model=AttributeJob,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(413, 422, 429, 503),
)
def start_attribute_job(request: AttributeRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Start an attribution in the background; poll its id for progress and the result."""
    return workbench.start_attribute(request).to_dict()


@router.get("/attribute/jobs/{job_id}", response_model=AttributeJob, responses=JOB)
def get_attribute_job(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
    """A background attribution's progress, and its result once done."""
    return workbench.attribution_job(job_id).to_dict()


@router.delete("/attribute/jobs/{job_id}", response_model=AttributeJob, responses=JOB)
def cancel_attribute_job(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
    """Cancel a background attribution; it stops at its next step."""
    workbench.attribution_job(job_id)
    return workbench.attribution_jobs.cancel(job_id).to_dict()
