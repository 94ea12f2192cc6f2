"""A charger that stops reading (`websockets`, another codebase than the edge): it sends
Heartbeat CALLs as fast as the socket takes them and never reads an answer, until its
own sends have been blocked for 3 s (the edge stopped reading it), or 20 s passed. Then
it prints {"sent": N} and waits for the edge to close the connection: {"closed_after_s": T}
(null if it did not close within 60 s).
Usage: stall.py URL CHARGE_BOX_ID PASSWORD"""
import asyncio
import base64
import json
import sys
import time

import websockets

url, box, password = sys.argv[1:4]


async def main():
    auth = base64.b64encode(f"{box}:{password}".encode()).decode()
    # max_queue=1: the library stops reading once one answer waits unread.
    ws = await websockets.connect(f"{url}/{box}", subprotocols=["ocpp1.6"],
                                  additional_headers={"Authorization": f"Basic {auth}"},
                                  max_queue=1)
    frame = json.dumps([2, "x" * 30, "Heartbeat", {}])
    sent, start = 0, time.time()
    while time.time() - start < 20:
        try:
            await asyncio.wait_for(ws.send(frame), 3)
        except asyncio.TimeoutError:
            break
        except websockets.exceptions.ConnectionClosed:
            break
        sent += 1
    print(json.dumps({"sent": sent}), flush=True)
    t0 = time.time()
    closed = None
    while time.time() - t0 < 60:
        if ws.state == websockets.protocol.State.CLOSED or ws.transport.is_closing():
            closed = round(time.time() - t0, 1)
            break
        await asyncio.sleep(0.2)
    print(json.dumps({"closed_after_s": closed}), flush=True)


asyncio.run(main())
