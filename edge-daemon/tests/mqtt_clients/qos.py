"""Which QoS messages are delivered at, seen by the Eclipse Paho MQTT client (another
codebase than ours). A publisher leaves a retained message at QoS 1, then three
subscribers subscribe to PREFIX# at QoS 0, 1 and 2, then the publisher sends one message
at each QoS. Prints JSON: {"sub0": {payload: delivered QoS, ...}, "sub1": ..., "sub2": ...}.
The standard: the lower of the published QoS and the subscription's.
Usage: qos.py HOST PORT 3.1.1|5 USERNAME PASSWORD PREFIX"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, version, user, password, prefix = sys.argv[1:7]
port = int(port)
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311


def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=proto)
    c.username_pw_set(user, password)
    c.ready = threading.Event()
    c.subscribed = threading.Event()
    c.got = {}
    c.on_connect = lambda cl, u, f, rc, p: cl.ready.set()
    c.on_subscribe = lambda cl, u, mid, rcs, p: cl.subscribed.set()

    def on_message(cl, u, msg):
        cl.got[msg.payload.decode()] = msg.qos

    c.on_message = on_message
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not c.ready.wait(5):
        print(json.dumps({"error": f"{name}: no CONNACK"}))
        sys.exit(0)
    return c


pub = client("qos-pub")
pub.publish(prefix + "retained", b"retained", qos=1, retain=True).wait_for_publish(5)
subs = []
for q in range(3):
    s = client(f"qos-sub{q}")
    s.subscribe(prefix + "#", qos=q)
    s.subscribed.wait(5)
    subs.append(s)
for q in range(3):
    pub.publish(prefix + f"q{q}", f"q{q}".encode(), qos=q).wait_for_publish(5)
deadline = time.time() + 5
while time.time() < deadline and any(len(s.got) < 4 for s in subs):
    time.sleep(0.05)
out = {f"sub{q}": s.got for q, s in enumerate(subs)}
for c in subs + [pub]:
    c.disconnect()
    c.loop_stop()
print(json.dumps(out))
