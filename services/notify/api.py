"""HTTP API of notify: the delivery log (filter, retry a dead one) and recipients' preferences."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import and_, or_, select

from services.notify import domain
from services.notify.models import Delivery, Recipient, Ticket
from services.notify.schemas import (CHANNEL_FIELDS, TELEGRAM_CHAT, TELEGRAM_TOKEN, DeliveryDetailSchema,
                                     DeliveryPage, DeliveryQuery, DeliverySchema, PreferencesSchema,
                                     RecipientPage, RecipientQuery, RecipientSchema, _web_url)
from shared.auth import STAFF, current_principal, roles
from shared.clock import as_utc
from shared.http import ApiError, deps
from shared.visibility import MANAGERS, can_see, visible_where

PREFIX = "/api/v1/notify"
log = logging.getLogger(__name__)
blp = Blueprint("notify", __name__, url_prefix=PREFIX, description="Notification deliveries and recipients")
TIMES = ("created_at", "updated_at", "next_attempt_at", "sent_at")


def _dump(row, names) -> dict:
    data = {name: getattr(row, name) for name in names}
    for key in TIMES:
        if data.get(key) is not None:
            data[key] = as_utc(data[key])
    return data


def _delivery(row: Delivery) -> dict:
    return _dump(row, [c.key for c in Delivery.__table__.columns])


def _recipient(row: Recipient) -> dict:
    data = _dump(row, [c.key for c in Recipient.__table__.columns])
    data["channels"] = [domain.redact_channel(c) for c in (row.channels or domain.DEFAULT_CHANNELS)]
    return data


def _encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(values, list) and len(values) == 2:
            return [dt.datetime.fromisoformat(values[0]), str(values[1])]
    except (ValueError, binascii.Error, TypeError):
        pass
    raise ApiError(400, "invalid cursor", {"cursor": ["not a cursor this API returned"]})


def _visible_tickets():
    """The condition on notify's ticket read model for the caller (None: every ticket)."""
    return visible_where(current_principal(), tier=Ticket.tier, group=Ticket.group_name, assignee=Ticket.assignee,
                         reporter_email=Ticket.reporter_email)


def _may_see(session, row: Delivery) -> bool:
    """As in the list: who may see the delivery's ticket; one of no known ticket, leads and admins."""
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
    if ticket is None:
        return current_principal().role in MANAGERS
    return can_see(current_principal(), tier=ticket.tier, group=ticket.group_name, assignee=ticket.assignee,
                   reporter_email=ticket.reporter_email)


@blp.route("/deliveries")
class Deliveries(MethodView):
    @roles(*STAFF)
    @blp.arguments(DeliveryQuery, location="query")
    @blp.response(200, DeliveryPage)
    def get(self, args):
        """The delivery log of the tickets the caller may see, newest first, with filters and
        cursor pagination (staff)."""
        query = select(Delivery)
        visible = _visible_tickets()
        if visible is not None:
            query = query.join(Ticket, Ticket.id == Delivery.ticket_id).where(visible)
        for name, column in (("ticket_id", Delivery.ticket_id), ("ticket_key", Delivery.ticket_key),
                             ("status", Delivery.state), ("channel", Delivery.channel)):
            if args.get(name):
                query = query.where(column == args[name])
        if args.get("recipient"):
            query = query.where(Delivery.recipient == args["recipient"].strip().lower())
        if args.get("cursor"):
            created, last_id = _decode_cursor(args["cursor"])
            query = query.where(or_(Delivery.created_at < created,
                                    and_(Delivery.created_at == created, Delivery.id < last_id)))
        limit = args["limit"]
        with deps().db.transaction() as session:
            rows = session.scalars(query.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                                   .limit(limit + 1)).all()
        more, rows = len(rows) > limit, rows[:limit]
        cursor = _encode_cursor([as_utc(rows[-1].created_at).isoformat(), rows[-1].id]) if more else None
        return {"items": [_delivery(r) for r in rows], "next_cursor": cursor}


@blp.route("/deliveries/<string:delivery_id>")
class DeliveryById(MethodView):
    @roles(*STAFF)
    @blp.response(200, DeliveryDetailSchema)
    def get(self, delivery_id):
        """One delivery with its rendered text (staff)."""
        with deps().db.transaction() as session:
            row = session.get(Delivery, delivery_id[:36])
            if row is None or not _may_see(session, row):
                raise ApiError(404, f"no delivery {delivery_id[:36]}")
            return _delivery(row)


@blp.route("/deliveries/<string:delivery_id>/retry")
class DeliveryRetry(MethodView):
    @roles("admin")
    @blp.response(202, DeliverySchema)
    def post(self, delivery_id):
        """Queue a dead delivery again with a fresh set of attempts (admin); 409 unless dead."""
        d = deps()
        now = d.clock.now()
        with d.db.transaction() as session:
            row = session.get(Delivery, delivery_id[:36], with_for_update=True)
            if row is None:
                raise ApiError(404, f"no delivery {delivery_id[:36]}")
            if row.state != "dead":
                raise ApiError(409, f"only a dead delivery can be retried; this one is {row.state}",
                               {"status": [row.state]})
            row.state, row.attempts, row.next_attempt_at, row.updated_at = "queued", 0, now, now
            row.last_error = row.lease_id = None
            data = _delivery(row)
        log.info("delivery %s queued again by %s", delivery_id, current_principal().name)
        d.sender.wake()
        return data


def _may_manage(address: str) -> None:
    principal = current_principal()
    if principal.role == "admin":
        return
    if principal.email and principal.email.strip().lower() == address:
        return
    raise ApiError(403, "only an admin or the recipient themselves may do this")


def _address(raw: str) -> str:
    address = domain.normalise_address(raw)
    if address is None:
        raise ApiError(422, "not a mail address", {"address": ["not a mail address"]})
    return address


@blp.route("/recipients")
class Recipients(MethodView):
    @roles("admin")
    @blp.arguments(RecipientQuery, location="query")
    @blp.response(200, RecipientPage)
    def get(self, args):
        """Everyone notify knows, by address (admin)."""
        query = select(Recipient).order_by(Recipient.address).limit(args["limit"] + 1)
        if args.get("cursor"):
            query = query.where(Recipient.address > args["cursor"])
        with deps().db.transaction() as session:
            rows = session.scalars(query).all()
        more, rows = len(rows) > args["limit"], rows[: args["limit"]]
        return {"items": [_recipient(r) for r in rows], "next_cursor": rows[-1].address if more else None}


@blp.route("/recipients/<string:address>")
class RecipientByAddress(MethodView):
    @blp.response(200, RecipientSchema)
    def get(self, address):
        """A recipient's preferences (admin, or the recipient themselves); secrets masked."""
        address = _address(address)
        _may_manage(address)
        with deps().db.transaction() as session:
            row = session.get(Recipient, address)
            if row is None:
                raise ApiError(404, f"no recipient {address}")
            return _recipient(row)

    @blp.arguments(PreferencesSchema)
    @blp.response(200, RecipientSchema)
    def put(self, prefs, address):
        """Set a recipient's preferences, creating the recipient if new (admin, or themselves).
        Channels in order: the next one is used when a delivery on one is dead."""
        address = _address(address)
        _may_manage(address)
        d = deps()
        now = d.clock.now()
        with d.db.transaction() as session:
            row = session.get(Recipient, address, with_for_update=True)
            channels = _merge_channels(prefs["channels"], (row.channels if row else None) or [])
            if row is None:
                row = Recipient(address=address, name=prefs.get("name") or address, created_at=now)
                session.add(row)
            elif prefs.get("name"):
                row.name = prefs["name"]
            row.language, row.timezone, row.channels = prefs["language"], prefs["timezone"], channels
            row.quiet_hours, row.preferences_set, row.updated_at = prefs["quiet_hours"], True, now
            session.flush()
            data = _recipient(row)
        log.info("preferences of %s set by %s: %s", address, current_principal().name,
                 [c["type"] for c in channels])
        return data


def _merge_channels(new: list[dict], old: list[dict]) -> list[dict]:
    """Validate each channel for its type; a secret left out or sent back masked keeps the stored
    one of the same type. Only admins point notify at URLs (chat hooks, other Telegram servers):
    anyone else could make the service call into the internal network."""
    admin = current_principal().role == "admin"
    stored = {c.get("type"): c for c in old}
    merged, errors = [], {}
    for index, channel in enumerate(new):
        kind = channel["type"]
        channel = dict(channel)
        for key in domain.SECRET_KEYS.get(kind, ()):
            if (key not in channel or domain.is_masked(channel[key])) and stored.get(kind, {}).get(key):
                channel[key] = stored[kind][key]
        problems = {}
        for key in CHANNEL_FIELDS[kind][1]:
            if not channel.get(key) or domain.is_masked(channel[key]):
                problems[key] = ["required for a " + kind + " channel"]
        if kind in ("slack", "webhook") and channel.get("url"):
            try:
                _web_url(channel["url"])
            except Exception as exc:  # marshmallow ValidationError: report it like the schema does
                problems["url"] = getattr(exc, "messages", [str(exc)])
        if kind == "telegram" and channel.get("bot_token") and not TELEGRAM_TOKEN.match(channel["bot_token"]):
            problems["bot_token"] = ["expected a Telegram bot token (123456:ABC...)"]
        if kind == "telegram" and channel.get("chat_id") and not TELEGRAM_CHAT.match(channel["chat_id"]):
            problems["chat_id"] = ["expected a numeric chat id or @channelname"]
        if kind == "webhook" and channel.get("secret") and len(channel["secret"]) < 16:
            problems["secret"] = ["at least 16 characters"]
        if problems:
            errors[index] = problems
        elif not admin and (kind in ("slack", "webhook") or channel.get("base_url")) and channel != stored.get(kind):
            raise ApiError(403, "only an admin may set up a channel that calls a URL",
                           {"channels": {index: {"type": ["ask an admin to configure " + kind]}}})
        merged.append(channel)
    if errors:
        raise ApiError(422, "invalid fields: channels", {"channels": errors})
    return merged
