"""POST /attribute and /attribute/jobs: attribution patching, now or in the background."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import COMPUTE_LIMITED
from ..routing import JobRoutes, add_job_routes, make_router
from ..schemas.attribute import AttributeJob, AttributeRequest, AttributeResponse
from ..workbench import Workbench

router = make_router(tags=["attribution"])


@router.post("/attribute", response_model=AttributeResponse, responses=COMPUTE_LIMITED)
def attribute(request: AttributeRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Estimate every cell of a component by attribution patching (AtP, AtP*)."""
    return workbench.attribute_now(request)


add_job_routes(
    router,
    JobRoutes(
        name="attribute",
        request=AttributeRequest,
        job=AttributeJob,
        start=Workbench.start_attribute,
        jobs=lambda workbench: workbench.attribution_jobs,
        start_says="Start an attribution in the background; poll its id for progress and the "
        "result.",
        get_says="A background attribution's progress, and its result once done.",
        cancel_says="Cancel a background attribution; it stops at its next step.",
    ),
)
