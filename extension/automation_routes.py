"""REST handlers of automations (`nbflows/api/automations...`) and of what they did for a run."""

from __future__ import annotations

from tornado import web

from nbflows.automations import outbox, rules
from nbflows.automations.schemas import AutomationCreate, AutomationUpdate
from nbflows.extension.base import NBFlowsHandler
from nbflows.extension.permissions import permitted
from nbflows.services.schemas.bodies import parse


class Automations(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(
            await self.orch.call(
                lambda s: [rules.automation_json(s, a) for a in rules.list_automations(s)]
            )
        )

    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(AutomationCreate, await self.body())
        out = await self.orch.call(
            lambda s: rules.automation_json(s, rules.create_automation(s, req))
        )
        self.reply(out, 201, self.api_url("automations", out["id"]))


class Automation(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, automation: str) -> None:
        self.reply(
            await self.orch.call(
                lambda s: rules.automation_json(s, rules.get_automation(s, automation))
            )
        )

    @web.authenticated
    @permitted
    async def patch(self, automation: str) -> None:
        req = parse(AutomationUpdate, await self.body())
        self.reply(
            await self.orch.call(
                lambda s: rules.automation_json(s, rules.update_automation(s, automation, req))
            )
        )

    @web.authenticated
    @permitted
    async def delete(self, automation: str) -> None:
        await self.orch.call(rules.delete_automation, automation)
        self.reply(None, 204)


class AutomationDeliveries(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, automation: str) -> None:
        self.reply(
            await self.orch.call(
                lambda s: outbox.deliveries_of_automation(s, rules.get_automation(s, automation).id)
            )
        )


class FlowRunNotifications(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        self.reply(await self.orch.call(outbox.deliveries_of_run, run_id))
