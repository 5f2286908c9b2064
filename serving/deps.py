"""What routes receive: the store, settings and the caller's key, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from features.offers import Offer
from features.settings import ApiKey, Settings
from serving.scoring import ScoringService
from serving.security import require
from serving.store import Store

# Async on purpose: FastAPI runs a plain `def` dependency in the thread pool, one hop per request.


async def _store(request: Request) -> Store:
    return request.app.state.store


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _offers(request: Request) -> list[Offer]:
    return request.app.state.offers


async def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring


StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
OffersDep = Annotated[list[Offer], Depends(_offers)]
ScoringDep = Annotated[ScoringService, Depends(_scoring)]
CrmKey = Annotated[ApiKey, Depends(require("crm"))]
MarketingKey = Annotated[ApiKey, Depends(require("marketing"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
