"""Locust entry point of the kit: ``locust -f loadtest/locustfile.py`` with ``LOADTEST_CONFIG`` set.

``python -m loadtest run`` uses it for the master and its local workers; workers on
other machines run it directly (see docs/loadtest.md). User class weights follow the
scenario's request mix; a load shape is defined only when the run asks for one.
"""

from __future__ import annotations

from loadtest import collect
from loadtest.shapes import SHAPE_CLASSES
from loadtest.users import (  # noqa: F401 - Locust finds the user classes in this module
    KIND_USERS,
    USER_CLASSES,
    AgencyConsumer,
    AgencyProducer,
    CatalogBrowser,
    CitizenPortalUser,
    OpenModelUser,
    SignedPingUser,
    config,
)

collect.register()
_cfg = config()
if _cfg.weights_from_mix:  # classes chosen by the mix: users in proportion to its shares
    for _kind, _name in KIND_USERS.items():
        USER_CLASSES[_name].weight = max(1, round(_cfg.shares.get(_kind, 0.0) * 1000))
OpenModelUser.concurrency = _cfg.open_concurrency

if _cfg.shape and not _cfg.open_rate:
    LoadShape = type("LoadShape", (SHAPE_CLASSES[_cfg.shape],), {"abstract": False})
