"""Tries the namespace rule with the Eclipse Paho MQTT client (another codebase than
ours) and prints what the broker answered as JSON:
  suback: reason codes of one SUBSCRIBE with every filter in FILTERS (in order),
  inside: then the PUBACK code of a QoS 1 PUBLISH inside (null: none came),
  shared_got: whether that message reached the shared subscription (the last filter
           of FILTERS, expected to be a $share one inside),
  outside: then the answer to a QoS 1 PUBLISH outside the namespace: {"rc": code} from
           its PUBACK, or "closed" when the connection was closed instead,
  outside2: then the same at QoS 2 (on 5 only: the code Paho reports at the end of
           the exchange, after its PUBREL),
  after: then the PUBACK code of another PUBLISH inside (null: none, or closed).
Usage: acl.py HOST PORT 3.1.1|5 USERNAME PASSWORD OUTSIDE_TOPIC INSIDE_TOPIC FILTER..."""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
user, password, outside, inside = sys.argv[4:8]
filters = sys.argv[8:]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acl-" + user, protocol=proto)
c.username_pw_set(user, password)
out = {"suback": None, "inside": None, "shared_got": False, "outside": None, "outside2": None, "after": None}
events = {k: threading.Event() for k in ["connect", "suback", "pub", "msg", "closed"]}
acks = {}


def on_connect(client, userdata, flags, reason_code, properties):
    events["connect"].set()


def on_subscribe(client, userdata, mid, reason_codes, properties):
    out["suback"] = [rc.value for rc in reason_codes]
    events["suback"].set()


def on_publish(client, userdata, mid, reason_code, properties):
    acks[mid] = reason_code.value
    events["pub"].set()


def on_message(client, userdata, msg):
    if msg.payload == b"shared":
        out["shared_got"] = True
        events["msg"].set()


def on_disconnect(client, userdata, flags, reason_code, properties):
    events["closed"].set()


c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_publish = on_publish
c.on_message = on_message
c.on_disconnect = on_disconnect
c.reconnect_delay_set(60, 60)  # never reconnect within the test
c.connect(host, port, keepalive=30)
c.loop_start()
if not events["connect"].wait(5):
    print(json.dumps({"error": "no CONNACK"}))
    sys.exit(0)
c.subscribe([(f, 1) for f in filters])
events["suback"].wait(5)


def publish(topic, payload, qos=1):
    """The PUBACK code, or "closed" when the connection closed first."""
    events["pub"].clear()
    info = c.publish(topic, payload, qos=qos)
    deadline = time.time() + 5
    while time.time() < deadline:
        if info.mid in acks:
            return acks[info.mid]
        if events["closed"].is_set():
            return "closed"
        time.sleep(0.02)
    return None


r = publish(inside, b"shared")
out["inside"] = None if r == "closed" else r
events["msg"].wait(3)
r = publish(outside, b"outside")
out["outside"] = r if r == "closed" else {"rc": r}
if not events["closed"].is_set() and version == "5":
    r = publish(outside, b"outside2", qos=2)
    out["outside2"] = r if r == "closed" else {"rc": r}
    time.sleep(0.3)  # a close after the exchange would show in "after"
if not events["closed"].is_set():
    r = publish(inside, b"after")
    out["after"] = None if r == "closed" else r
c.loop_stop()
print(json.dumps(out))
