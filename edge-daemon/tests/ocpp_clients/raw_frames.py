"""Hostile and broken OCPP-J traffic from a plain WebSocket client (`websockets`, not our
code), printed as one JSON object on stdout:
  frames: for each frame sent (text, or {"binary": hex}), the frame that came back
          (parsed JSON), or null when nothing came within a second;
  oversized: how the edge ended the connection after a frame above its size limit
          (the close code, or "reset" when it closed before the frame was all sent),
          and whether a Heartbeat on a new connection is answered;
  logins: the HTTP status of each refused login (name -> status);
  steady: how many of the Heartbeats a second, well-behaved charger sent meanwhile
          (one every 50 ms, for at least $STEADY_S seconds) were answered, and how many
          were sent.
Usage: raw_frames.py URL CHARGE_BOX_ID PASSWORD STEADY_ID STEADY_PASSWORD VEHICLE_ID
       VEHICLE_PASSWORD < frames.json   (the vehicle's MQTT credentials must not open
       the OCPP door)"""
import asyncio
import base64
import json
import os
import sys
import time

import websockets

url, box, password = sys.argv[1:4]
steady = sys.argv[4:6]
vehicle = sys.argv[6:8]
frames = json.load(sys.stdin)


def headers(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


async def open_ws(user, pw, protocols=("ocpp1.6",), auth=True):
    return await websockets.connect(f"{url}/{user}", subprotocols=list(protocols) or None,
                                    additional_headers=headers(user, pw) if auth else None,
                                    max_size=None)


async def reply(ws):
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 1.0))
    except asyncio.TimeoutError:
        return None


async def heartbeats(stop, counts):
    ws = await open_ws(*steady)
    n = 0
    while not stop.is_set():
        n += 1
        await ws.send(json.dumps([2, f"hb{n}", "Heartbeat", {}]))
        counts["sent"] += 1
        r = await reply(ws)
        if r and r[0] == 3 and r[1] == f"hb{n}" and "currentTime" in r[2]:
            counts["answered"] += 1
        await asyncio.sleep(0.05)
    await ws.close()


async def login(user, pw, **kw):
    try:
        ws = await open_ws(user, pw, **kw)
        await ws.close()
        return 101
    except websockets.exceptions.InvalidStatus as e:
        return e.response.status_code


async def main():
    out = {}
    counts = {"sent": 0, "answered": 0}
    stop = asyncio.Event()
    started = time.time()
    hb = asyncio.create_task(heartbeats(stop, counts))
    ws = await open_ws(box, password)
    got = []
    for f in frames:
        if isinstance(f, dict):
            await ws.send(bytes.fromhex(f["binary"]))
        else:
            await ws.send(f)
        got.append(await reply(ws))
    out["frames"] = got
    try:
        await ws.send("[" + " " * (1024 * 1024) + "]")
        await asyncio.wait_for(ws.recv(), 3)
        out["oversized"] = {"close": None}
    except websockets.exceptions.ConnectionClosed as e:
        # The edge may close before the client has sent it all: then the client sees
        # the reset first (the edge's own count says why it closed).
        out["oversized"] = {"close": e.rcvd.code if e.rcvd else "reset"}
    ws = await open_ws(box, password)
    await ws.send(json.dumps([2, "after", "Heartbeat", {}]))
    r = await reply(ws)
    out["oversized"]["then_heartbeat"] = bool(r and r[0] == 3)
    await ws.close()
    out["logins"] = {
        "wrong_password": await login(box, password[::-1]),
        "unknown_charger": await login("CP-NOBODY", password),
        "no_credentials": await login(box, password, auth=False),
        "no_subprotocol": await login(box, password, protocols=()),
        "other_subprotocol": await login(box, password, protocols=("ocpp2.0.1",)),
        "vehicle_credentials": await login(*vehicle),
    }
    left = float(os.environ.get("STEADY_S", "0")) - (time.time() - started)
    if left > 0:
        await asyncio.sleep(left)
    stop.set()
    await hb
    out["steady"] = counts
    print(json.dumps(out))


asyncio.run(main())
