"""Buses plugged into one charge point (The Mobility House's `ocpp` 1.6 library over
`websockets`, another codebase than the edge). Reads a JSON spec on stdin:
  {"connectors": [{"connector": 1, "tag": "bus-1", "soc": 10, "obey": true}, ...],
   "run_s": 6}
Starts a transaction on each connector and reports its state of charge, then for run_s
seconds meters each connector every 0.5 s: at the TxProfile's current limit when `obey`,
at twice it plus 5 kW when not. Prints JSON lines: `profile` for every
SetChargingProfile it accepted (connector, purpose, starts in s, limits in W), `started`,
`done`.
Usage: plug_in.py URL CHARGE_BOX_ID PASSWORD < spec.json"""
import asyncio
import base64
import json
import sys
import time
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

url, box, password = sys.argv[1:4]
spec = json.load(sys.stdin)


def emit(event, **kw):
    print(json.dumps({"event": event, **kw}), flush=True)


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Charger(ChargePoint):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.limits = {}

    @on(Action.set_charging_profile)
    def on_profile(self, connector_id, cs_charging_profiles):
        p = json.loads(json.dumps(cs_charging_profiles, default=float))
        periods = p["charging_schedule"]["charging_schedule_period"]
        starts = [x["start_period"] for x in periods]
        limits = [x["limit"] for x in periods]
        if p["charging_profile_purpose"] == "TxProfile":
            self.limits[connector_id] = (time.time(), starts, limits)
        emit("profile", connector=connector_id, purpose=p["charging_profile_purpose"],
             starts=starts, limits=limits, tx=p.get("transaction_id"))
        return call_result.SetChargingProfile(status="Accepted")

    def limit_now(self, connector):
        at, starts, limits = self.limits[connector]
        elapsed = time.time() - at
        current = limits[0]
        for s, l in zip(starts, limits):
            if s <= elapsed:
                current = l
        return current


def reading(wh, power_w=None, soc=None):
    values = [{"value": str(int(wh)), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    if power_w is not None:
        values.append({"value": str(int(power_w)), "measurand": "Power.Active.Import", "unit": "W"})
    if soc is not None:
        values.append({"value": str(soc), "measurand": "SoC", "unit": "Percent"})
    return [{"timestamp": now(), "sampledValue": values}]


async def main():
    auth = base64.b64encode(f"{box}:{password}".encode()).decode()
    ws = await websockets.connect(f"{url}/{box}", subprotocols=["ocpp1.6"],
                                  additional_headers={"Authorization": f"Basic {auth}"})
    cp = Charger(box, ws)
    task = asyncio.create_task(cp.start())
    await cp.call(call.BootNotification(charge_point_model="SimBus-150", charge_point_vendor="Garasi Test"))
    txs, wh = {}, {}
    for c in spec["connectors"]:
        k = c["connector"]
        await cp.call(call.StatusNotification(connector_id=k, error_code="NoError", status="Preparing"))
        s = await cp.call(call.StartTransaction(connector_id=k, id_tag=c["tag"], meter_start=0, timestamp=now()))
        txs[k], wh[k] = s.transaction_id, 0
        await cp.call(call.MeterValues(connector_id=k, transaction_id=txs[k], meter_value=reading(0, 0, c["soc"])))
        emit("started", connector=k, tx=txs[k])
    end = time.time() + spec["run_s"]
    while time.time() < end:
        await asyncio.sleep(0.5)
        for c in spec["connectors"]:
            k = c["connector"]
            if k not in cp.limits or time.time() - cp.limits[k][0] < 1.5:
                continue
            limit = cp.limit_now(k)
            power = limit if c["obey"] else limit * 2 + 5000
            wh[k] += power * 0.5 / 3600
            await cp.call(call.MeterValues(connector_id=k, transaction_id=txs[k], meter_value=reading(wh[k], power)))
    await ws.close()
    task.cancel()
    emit("done")


asyncio.run(main())
