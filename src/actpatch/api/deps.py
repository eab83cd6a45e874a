"""Dependencies the routes declare, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .settings import Settings
from .workbench import Workbench


# async: FastAPI runs a plain dependency in its thread pool, which a crowd of requests can fill;
# these only read the app's state, so GET /health (async too) never waits for a thread.
async def get_workbench(request: Request) -> Workbench:
    """The app's workbench: its models, warm experiments and sweep jobs."""
    workbench: Workbench = request.app.state.workbench
    return workbench


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.workbench.settings
    return settings


WorkbenchDep = Annotated[Workbench, Depends(get_workbench)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
