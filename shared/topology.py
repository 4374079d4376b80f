"""Who consumes what: every queue of the system and its bindings (DESIGN.md, Events).

Every process declares all of it at start, so an event is never published before the queues
that must receive it exist, and `mandatory` publishing only fails on a real misconfiguration.
"""
from shared.bus.base import Topology

TOPOLOGY = Topology(queues={
    "intake.events": ("escalation.routed", "escalation.defect_linked", "escalation.defect_resolved",
                      "escalation.manager_notified", "sla.warning", "sla.breached", "sla.met"),
    "sla.tickets": ("ticket.#",),
    "escalation.events": ("ticket.created", "ticket.updated", "ticket.assigned",
                          "ticket.escalation_requested", "sla.warning", "sla.breached"),
    "notify.events": ("ticket.created", "ticket.assigned", "ticket.commented", "ticket.status_changed",
                      "sla.warning", "sla.breached", "escalation.manager_notified",
                      "escalation.defect_linked", "escalation.defect_resolved"),
})
