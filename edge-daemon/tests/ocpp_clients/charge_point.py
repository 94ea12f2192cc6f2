"""A charge point from another codebase than the edge: The Mobility House's `ocpp` 2.1
library (OCPP 1.6J, which checks every payload it sends and receives against the
official JSON schemas) over `websockets`. It runs one charging day and prints what
happened as JSON lines on stdout, for the test to check against the edge:
  boot, authorize, started, charging (the test now sends SetChargingProfile,
  GetCompositeSchedule and RemoteStopTransaction through the edge's API), profile,
  stopped, started2, offline (the socket closes; meter values and the stop are queued),
  start_again (after reconnecting, the second start sent again as if its answer was
  lost), replayed (then the queue in order, the stop twice), stop_only (a stop for a transaction id the edge never gave), done.
With a fifth argument `autostop` it stops the first charge itself (no RemoteStop).
Usage: charge_point.py URL CHARGE_BOX_ID PASSWORD ID_TAG [autostop]"""
import asyncio
import base64
import json
import sys
from datetime import datetime, timedelta, timezone

import logging

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

url, box, password, tag = sys.argv[1:5]
autostop = sys.argv[5:6] == ["autostop"]
logging.basicConfig(level=logging.INFO, stream=sys.stderr)


def emit(event, **kw):
    print(json.dumps({"event": event, **kw}), flush=True)


def ts(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def energy(dt, wh, context="Sample.Periodic", power_w=None):
    values = [{"value": str(wh), "context": context, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    if power_w is not None:
        values.append({"value": str(power_w / 1000), "context": context, "measurand": "Power.Active.Import", "unit": "kW"})
    return {"timestamp": ts(dt), "sampledValue": values}


class Charger(ChargePoint):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.remote_stop = asyncio.Event()
        self.profiles = {}

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id):
        self.stop_tx = transaction_id
        self.remote_stop.set()
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.set_charging_profile)
    def on_set_profile(self, connector_id, cs_charging_profiles):
        # The library hands limits over as Decimal (its schema check parses floats so);
        # plain numbers again, to send them back in a composite schedule.
        self.profiles[connector_id] = json.loads(json.dumps(cs_charging_profiles, default=float))
        emit("profile", connector=connector_id, purpose=cs_charging_profiles["charging_profile_purpose"])
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_composite_schedule)
    def on_composite(self, connector_id, duration, charging_rate_unit=None):
        p = self.profiles.get(connector_id)
        if p is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        schedule = dict(p["charging_schedule"])
        schedule["duration"] = duration
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id,
            schedule_start=ts(datetime.now(timezone.utc)), charging_schedule=schedule)


async def connect():
    auth = base64.b64encode(f"{box}:{password}".encode()).decode()
    # Like a real charger: keep trying while the central system is away (30 s).
    for attempt in range(150):
        try:
            ws = await websockets.connect(f"{url}/{box}", subprotocols=["ocpp1.6"],
                                          additional_headers={"Authorization": f"Basic {auth}"})
            break
        except (OSError, websockets.exceptions.InvalidHandshake):
            if attempt == 149:
                raise
            await asyncio.sleep(0.2)
    cp = Charger(box, ws)
    task = asyncio.create_task(cp.start())
    return ws, cp, task


async def boot(cp):
    r = await cp.call(call.BootNotification(charge_point_model="SimBus-150", charge_point_vendor="Garasi Test"))
    emit("boot", status=r.status, interval=r.interval)


async def main():
    ws, cp, task = await connect()
    await boot(cp)
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
    known = await cp.call(call.Authorize(id_tag=tag))
    unknown = await cp.call(call.Authorize(id_tag="NOT-A-BUS"))
    emit("authorize", known=known.id_tag_info["status"], unknown=unknown.id_tag_info["status"])

    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    s = await cp.call(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=10000, timestamp=ts(t0)))
    tx = s.transaction_id
    emit("started", tx=tx, status=s.id_tag_info["status"])
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    for i, wh in enumerate([10500, 11000, 11750], start=1):
        await cp.call(call.MeterValues(connector_id=1, transaction_id=tx,
                                       meter_value=[energy(t0 + timedelta(minutes=10 * i), wh, power_w=45000)]))
    emit("charging", tx=tx)
    if autostop:
        cp.stop_tx = tx
    else:
        await asyncio.wait_for(cp.remote_stop.wait(), 60)
    t1 = t0 + timedelta(minutes=40)
    r = await cp.call(call.StopTransaction(
        meter_stop=12000, timestamp=ts(t1), transaction_id=cp.stop_tx, reason="Local" if autostop else "Remote",
        id_tag=tag,
        transaction_data=[energy(t0, 10000, "Transaction.Begin"), energy(t1, 12000, "Transaction.End")]))
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
    emit("stopped", tx=cp.stop_tx, status=r.id_tag_info["status"])

    # A second charge; the network goes in the middle of it.
    t2 = t1 + timedelta(minutes=5)
    start2 = call.StartTransaction(connector_id=2, id_tag=tag, meter_start=12000, timestamp=ts(t2))
    s2 = await cp.call(start2)
    tx2 = s2.transaction_id
    await cp.call(call.MeterValues(connector_id=2, transaction_id=tx2, meter_value=[energy(t2 + timedelta(minutes=10), 12500)]))
    emit("started2", tx=tx2)
    await ws.close()
    task.cancel()
    emit("offline")
    queue = [
        call.MeterValues(connector_id=2, transaction_id=tx2, meter_value=[energy(t2 + timedelta(minutes=20), 13000)]),
        call.MeterValues(connector_id=2, transaction_id=tx2, meter_value=[energy(t2 + timedelta(minutes=30), 14000)]),
        call.StopTransaction(meter_stop=15000, timestamp=ts(t2 + timedelta(minutes=40)), transaction_id=tx2,
                             reason="EVDisconnected", id_tag=tag),
    ]
    await asyncio.sleep(1.5)
    ws, cp, task = await connect()
    await boot(cp)
    # As if the answer to the start had been lost: the same start again.
    again = await cp.call(start2)
    emit("start_again", tx=again.transaction_id)
    for m in queue:
        await cp.call(m)
    await cp.call(queue[-1])
    emit("replayed", tx=tx2)

    # A stop for a transaction the edge never saw start (started while it was down).
    t3 = t2 + timedelta(minutes=50)
    await cp.call(call.StopTransaction(
        meter_stop=20000, timestamp=ts(t3 + timedelta(minutes=30)), transaction_id=987654, reason="Local",
        transaction_data=[energy(t3, 19000, "Transaction.Begin")]))
    emit("stop_only", tx=987654)
    await ws.close()
    task.cancel()
    emit("done")


asyncio.run(main())
