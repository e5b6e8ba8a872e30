"""One leader among daemons sharing a warehouse: a lease row with an expiry.

Why a row and not a PostgreSQL advisory lock: it works the same on SQLite, it survives a
connection drop without silently changing hands, and ``status`` can show who holds it.
The holder renews the lease every third of its length; a standby takes it once it has
expired, so a dead leader is replaced within ``lease_s`` plus one renewal interval.
Taking and renewing are one conditional UPDATE (or an INSERT that the primary key makes
atomic), so two standbys racing for an expired lease cannot both win. Expiry compares
instants from the daemons' clocks: hosts sharing a warehouse need NTP-synchronized time.

A leader that cannot renew (database unreachable) stops counting itself leader when its
own lease would have expired, so it never runs jobs beside a new leader.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from models.clock import Clock
from models.tables import daemon_leases

log = logging.getLogger("salespulse.daemon")

SCHEDULER = "scheduler"


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Lease:
    engine: Engine
    clock: Clock
    length: timedelta
    holder: str = field(default_factory=instance_name)
    name: str = SCHEDULER
    valid_until: datetime | None = None  # our own lease's expiry, as far as we know

    def held(self) -> bool:
        """Whether we hold an unexpired lease (by our clock), without asking the database."""
        return self.valid_until is not None and self.clock() < self.valid_until

    def renew(self) -> bool:
        """Take or extend the lease; True when we hold it afterwards. A database error keeps what we knew."""
        now = self.clock()
        expires = now + self.length
        table = daemon_leases
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(table)
                    .where(table.c.name == self.name, or_(table.c.holder == self.holder, table.c.expires_at < now))
                    .values(
                        holder=self.holder,
                        acquired_at=case((table.c.holder == self.holder, table.c.acquired_at), else_=now),
                        renewed_at=now,
                        expires_at=expires,
                    )
                ).rowcount
                if not taken and conn.execute(select(table.c.name).where(table.c.name == self.name)).first() is None:
                    conn.execute(
                        insert(table).values(
                            name=self.name, holder=self.holder, acquired_at=now, renewed_at=now, expires_at=expires
                        )
                    )
                    taken = 1
        except IntegrityError:
            taken = 0  # another daemon inserted the row first
        except SQLAlchemyError as exc:
            log.warning(
                "leader lease not renewed: %s", str(exc).splitlines()[0], extra={"fields": {"event": "lease_error"}}
            )
            return self.held()
        self.valid_until = expires if taken else None
        return bool(taken)

    def release(self) -> None:
        """Hand the lease back (a graceful stop), so a standby need not wait for the expiry."""
        self.valid_until = None
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(daemon_leases).where(
                        daemon_leases.c.name == self.name, daemon_leases.c.holder == self.holder
                    )
                )
        except SQLAlchemyError as exc:
            log.warning("leader lease not released (it expires by itself): %s", str(exc).splitlines()[0])

    def current_holder(self) -> tuple[str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(daemon_leases.c.holder, daemon_leases.c.expires_at).where(daemon_leases.c.name == self.name)
            ).first()
        return (row[0], row[1]) if row else None
