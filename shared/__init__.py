"""Tierline's common package: config, events, bus, db, outbox/inbox, auth, http."""
