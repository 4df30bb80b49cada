"""A seeded simulation of months of payouts for several programs on one platform account, with the faults
an insider, a typo or a crash would bring (issue 16): funding, carries, reversals, decisions, recovery;
a ledger restored from an earlier backup, concurrent executions and decisions, dropped answers (a process
that died after Stripe moved the money), and at the end a ledger re-created from the same files that runs
every month again. Small in the suite (`test_simulation.py`), large in `bench/bench_simulation.py`.

Its oracle is the sandbox's own records, never the ledger's: per (program, affiliate), the money that
reached the affiliate (transfers net of reversals) never exceeds what the simulation gave it to earn
(commissions, less what was written off); per payment identity at most one transfer; no charge pays more
than it holds; and in every ledger, every reversed cent is decided at most once.
"""

from __future__ import annotations

import random
import threading
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
import stripe

from sorae_payouts.aftercare.reversals import ReversalError, reversed_items
from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.periods import period_key
from sorae_payouts.execution.pay_batch import ExecutionSettings
from sorae_payouts.month_end.finalize import finalize_programs
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.registry.funding import record_funding
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.stripe_gateway import GatewayConfig
from sorae_payouts.use_cases import aftercare, payouts
from sorae_payouts.use_cases.month_end import unpaid_checker
from sorae_payouts_tests.factory import (
    add_affiliate,
    add_commission,
    add_event,
    add_program,
    approve,
    decide_reversal,
    register_operators,
)

POLICY = PayoutPolicy.from_major({"usd": "20.00"}, {"usd": "100000.00"})


@dataclass
class World:
    """Everything the simulation decided, kept apart from any ledger: the oracle's side."""

    seed: int
    programs: list[str]
    affiliates: int
    months: list[date]
    accounts: dict[tuple[str, str], str] = field(default_factory=dict)  # (program, affiliate) -> acct
    broken: set[str] = field(default_factory=set)  # accounts that cannot receive transfers (yet)
    commissions: list[tuple[str, str, int, datetime, str]] = field(default_factory=list)  # p, a, minor, at, order
    cancellations: list[tuple[str, str, datetime]] = field(default_factory=list)  # program, order, at
    charges: dict[str, tuple[str, int]] = field(default_factory=dict)  # charge id -> (program, amount)
    faults_seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refusals: list[str] = field(default_factory=list)

    def earned(self) -> dict[tuple[str, str], int]:
        gross: dict[tuple[str, str], int] = defaultdict(int)
        for program, affiliate, minor, _, _ in self.commissions:
            gross[(program, affiliate)] += minor
        return gross


class Simulation:
    def __init__(self, world: World, sandbox, api_key: str):
        self.world, self.sandbox, self.key = world, sandbox, api_key
        self.rng = random.Random(world.seed)
        self.client = stripe.StripeClient(api_key, base_addresses={"api": sandbox.url}, max_network_retries=0)
        # No SDK retries: a dropped answer stays unknown (`processing`) for the next run or refresh to resolve.
        self.config = GatewayConfig(api_key, sandbox.url, max_network_retries=0, rate_limit_per_second=1_000)

    # -- the world ---------------------------------------------------------------------------------------
    def open_accounts(self) -> None:
        w = self.world
        for program in w.programs:
            for n in range(w.affiliates):
                account = self.client.v1.accounts.create(
                    params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
                ).id
                w.accounts[(program, f"aff{n}")] = account
                if self.rng.random() < 0.2:
                    self.sandbox.admin("POST", f"/_sandbox/accounts/{account}", {"transfers": "inactive"})
                    w.broken.add(account)

    def earn(self, month: date) -> None:
        w = self.world
        for (program, affiliate), _ in sorted(w.accounts.items()):
            for _ in range(self.rng.randint(0, 2)):
                at = datetime(month.year, month.month, self.rng.randint(1, 27), 12, tzinfo=UTC)
                minor = self.rng.choice([500, 1_500, 2_500, 4_000, 9_000])
                order = f"o{len(w.commissions)}"
                w.commissions.append((program, affiliate, minor, at, order))
        earlier = [c for c in w.commissions if c[3].date() < month.replace(day=1)]
        for program, _, _, _, order in self.rng.sample(earlier, k=min(len(earlier), 2)):
            if all(o != order for _, o, _ in w.cancellations):
                w.cancellations.append((program, order, datetime(month.year, month.month, 28, tzinfo=UTC)))

    # -- a ledger living through it ----------------------------------------------------------------------
    def load(self, engine, month: date) -> None:
        """Write the month's inputs into a ledger (what the imports do from the files)."""
        w = self.world
        if month == w.months[0]:
            for program in w.programs:
                add_program(engine, program, policy={"negative_balance": "carry"})
                for (p, affiliate), account in sorted(w.accounts.items()):
                    if p == program:
                        add_affiliate(engine, affiliate, account=account, program_id=program)
        for program, affiliate, minor, at, order in w.commissions:
            if at.date().replace(day=1) == month:
                add_commission(engine, affiliate, minor, earned_at=at, order_id=order, program_id=program)
        for program, order, at in w.cancellations:
            if at.date().replace(day=1) == month:
                add_event(engine, order, "cancellation", occurred_at=at, program_id=program)

    def fund(self, engine, *, new_charges: bool) -> None:
        gateway = ProgramGateways(self.config, engine).for_program_id(self.world.programs[0])
        if new_charges:
            for program in self.world.programs:
                amount = 100_000
                charge = self.client.v1.charges.create(
                    params={"amount": amount, "currency": "usd", "source": "tok_bypassPending"}
                ).id
                self.world.charges[charge] = (program, amount)
        for charge, (program, _) in self.world.charges.items():
            record_funding(engine, gateway, program, charge_id=charge, recorded_by="sim", now=_at(self.world.months[0]))

    def close_month(self, engine, month: date) -> None:
        now = _after(month)
        gateways = ProgramGateways(self.config, engine)
        finalize_programs(engine, month, self.world.programs, now=now, holding_days=0)
        built = build_manifests(
            engine, month, self.world.programs, policy=POLICY, now=now, unpaid_check=unpaid_checker(gateways)
        )
        self.world.faults_seen["programs_refused_at_month_end"] += len(built.refused)
        for program in built.reports:
            approve(engine, month, now=now, program_id=program)

    def pay(self, engine, month: date, *, faults: bool) -> None:
        gateways = ProgramGateways(self.config, engine)
        if faults:  # answers lost after Stripe moved the money: the state a killed process leaves
            self.sandbox.admin(
                "POST",
                "/_sandbox/faults",
                {
                    "mode": "drop_after_commit",
                    "probability": 0.3,
                    "path_prefix": "/v1/transfers",
                    "seed": self.rng.randint(0, 9),
                },
            )
        twice = self.rng.choice(self.world.programs)
        threads = [
            threading.Thread(target=self._pay_one, args=(engine, gateways, month, p)) for p in self.world.programs
        ]
        threads.append(threading.Thread(target=self._pay_one, args=(engine, gateways, month, twice)))  # at once
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.sandbox.admin("DELETE", "/_sandbox/faults")
        with engine.connect() as conn:  # answers still unknown after the run: refresh resolves them
            self.world.faults_seen["answers_unknown_after_run"] += conn.execute(
                sa.text("SELECT COUNT(*) FROM transfer_attempt WHERE state = 'processing'")
            ).scalar_one()

    def _pay_one(self, engine, gateways, month, program) -> None:
        try:
            payment = payouts.pay_program_month(
                engine, gateways, month, program, settings=ExecutionSettings(workers=4), now=_after(month)
            )
            # Answers lost in this run and found at Stripe by the lookup (the transfer existed): no second send.
            self.world.faults_seen["answers_lost_resolved_by_lookup"] += payment.report.resolved_by_lookup
        except PayoutRefused as exc:
            self.world.faults_seen["executions_refused"] += 1
            self.world.refusals.append(str(exc))
        except Exception:
            self.world.faults_seen["executions_interrupted"] += 1

    def fix_accounts(self) -> None:
        for account in sorted(self.world.broken):
            self.sandbox.admin("POST", f"/_sandbox/accounts/{account}", {"transfers": "active"})
        self.world.broken.clear()

    def reverse_some(self) -> None:
        transfers = [t for t in self.client.v1.transfers.list(params={"limit": 100}).auto_paging_iter()]
        for transfer in self.rng.sample(transfers, k=min(2, len(transfers))):
            room = transfer.amount - transfer.amount_reversed
            if room > 0:
                self.client.v1.transfers.reversals.create(transfer.id, params={"amount": self.rng.randint(1, room)})

    def refresh_and_decide(self, engine, *, decide: bool) -> None:
        gateways = ProgramGateways(self.config, engine)
        aftercare.refresh_programs(engine, gateways, program_ids=self.world.programs)
        if not decide:
            return
        with engine.connect() as conn:
            pending = [i for i in reversed_items(conn, program_id=None) if i.pending_minor > 0]
        for item in pending:
            # The same reversal gets the same decision in every timeline (a restored ledger re-decides it).
            kind = ("owe_again", "write_off")[
                zlib.crc32(f"{self.world.seed}/{item.program_id}/{item.affiliate_id}".encode()) % 2
            ]
            reason = "simulated" if kind == "write_off" else None
            results: list = []
            register_operators(engine, "tests", "tests-second", program_id=item.program_id)

            def decide_once(who: str, item=item, kind=kind, reason=reason, results=results) -> None:
                try:
                    results.append(
                        decide_reversal(
                            engine,
                            item.payout_item_id,
                            kind,
                            by=who,
                            reason=reason,
                            now=_at(date.today()),
                            program_id=item.program_id,
                        )
                    )
                except (ReversalError, sa.exc.DBAPIError):
                    results.append(None)

            pair = [threading.Thread(target=decide_once, args=(who,)) for who in ("tests", "tests-second")]  # at once
            for t in pair:
                t.start()
            for t in pair:
                t.join()
            if len([r for r in results if r is not None]) > 1:
                self.world.faults_seen["decided_twice"] += 1  # the invariants below must catch this


def _at(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def _after(month: date) -> datetime:
    nxt = month.replace(year=month.year + (month.month == 12), month=month.month % 12 + 1)
    return datetime(nxt.year, nxt.month, 5, tzinfo=UTC)


# -- the oracle ------------------------------------------------------------------------------------------
def check_invariants(world: World, client: stripe.StripeClient, engines: list) -> dict[str, int]:
    """Assert the simulation's invariants against the sandbox's records (and each ledger's decisions)."""
    transfers = list(client.v1.transfers.list(params={"limit": 100}).auto_paging_iter())
    net: dict[tuple[str, str], int] = defaultdict(int)
    identities: dict[tuple, int] = defaultdict(int)
    by_charge: dict[str, int] = defaultdict(int)
    for t in transfers:
        meta = t.metadata.to_dict()
        key = (meta.get("program_id", "default"), meta["affiliate_id"])
        net[key] += t.amount - t.amount_reversed
        identities[(key, meta["period"], t.currency)] += 1
        if t.source_transaction:
            by_charge[t.source_transaction] += t.amount
    earned, written_off = world.earned(), _written_off(engines[0])
    for key, paid in net.items():
        owed = earned.get(key, 0) - written_off.get(key, 0)
        assert paid <= owed, f"{key} received {paid}, more than the {owed} it earned (less write-offs)"
    twice = [k for k, n in identities.items() if n > 1]
    assert not twice, f"paid twice for one payment identity: {twice}"
    for charge, spent in by_charge.items():
        assert spent <= world.charges[charge][1], f"charge {charge} paid {spent} of {world.charges[charge][1]}"
    for engine in engines:
        with engine.connect() as conn:
            over = conn.execute(
                sa.text(
                    "SELECT i.payout_item_id FROM payout_item i WHERE i.reversed_minor < COALESCE((SELECT SUM("
                    "d.amount_minor) FROM reversal_decision d WHERE d.payout_item_id = i.payout_item_id), 0)"
                )
            ).all()
        assert not over, f"reversed money decided more than once: items {over}"
    return {"transfers": len(transfers), "paid_minor": sum(net.values()), "affiliates_paid": len(net)}


def _written_off(engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT program_id, affiliate_id, SUM(amount_minor) FROM reversal_decision "
                "WHERE decision = 'write_off' GROUP BY program_id, affiliate_id"
            )
        ).all()
    return {(p, a): int(m) for p, a, m in rows}


def run(world: World, sandbox, api_key: str, make_engine, backup, *, recreate: bool = True) -> dict[str, int]:
    """Live through every month of `world` in one ledger (with one backup taken and restored on the way),
    then, with `recreate`, in a second ledger built from the same inputs; check the invariants after each."""
    sim = Simulation(world, sandbox, api_key)
    sim.open_accounts()
    for month in world.months:
        sim.earn(month)
    engine = make_engine()
    restore = None
    for n, month in enumerate(world.months):
        sim.load(engine, month)
        if n == 0:
            sim.fund(engine, new_charges=True)
        sim.close_month(engine, month)
        if n == 1:
            restore = backup(engine)  # a backup taken before this month's payments and their aftermath
        sim.pay(engine, month, faults=n % 2 == 1)
        sim.refresh_and_decide(engine, decide=False)
        if n == len(world.months) - 2:
            sim.fix_accounts()
        sim.reverse_some()
        sim.refresh_and_decide(engine, decide=True)
        if n == 1 and restore is not None:
            restore()  # the ledger forgets this month's payments, reversals and decisions
            world.faults_seen["restored"] += 1
            sim.pay(engine, month, faults=False)  # the operator re-runs the month: Stripe's transfers are adopted
            sim.refresh_and_decide(engine, decide=True)
    sim.refresh_and_decide(engine, decide=True)
    engines = [engine]
    figures = check_invariants(world, sim.client, engines)
    if recreate:  # the same files into a new ledger: every month again, nothing new may be paid beyond it
        again = make_engine()
        for n, month in enumerate(world.months):
            sim.load(again, month)
            if n == 0:
                sim.fund(again, new_charges=False)
            sim.close_month(again, month)
            sim.pay(again, month, faults=False)
            sim.refresh_and_decide(again, decide=False)
        engines.append(again)
        figures = check_invariants(world, sim.client, engines)
    figures.update({k: v for k, v in world.faults_seen.items()})
    with engine.connect() as conn:
        for name, sql in (
            ("carried_items", "SELECT COUNT(*) FROM payout_item_carry"),
            ("stripe_checks", "SELECT COUNT(*) FROM payout_item_stripe_check"),
            ("decisions", "SELECT COUNT(*) FROM reversal_decision"),
            ("reversed_items", "SELECT COUNT(*) FROM payout_item WHERE reversed_minor > 0"),
            ("blocked_items", "SELECT COUNT(*) FROM payout_item WHERE status = 'blocked'"),
            ("owed_again_carried", "SELECT COUNT(*) FROM owed_again_carry"),
        ):
            figures[name] = int(conn.execute(sa.text(sql)).scalar_one())
    figures["months"] = len(world.months)
    figures["periods"] = len({period_key(m) for m in world.months})
    return figures
