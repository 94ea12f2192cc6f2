"""MQTT 5 Message Expiry, seen by the Eclipse Paho MQTT client (another codebase than
ours). A client keeps a session (Session Expiry 60 s), subscribes at QoS 1 and goes
away; two messages are published meanwhile, one with a Message Expiry Interval of 1 s,
one of 60 s; 2.5 s later the client comes back. Then the same with retained messages and
a new subscriber. Prints JSON: {"got": messages received, "expiry_left": the Message
Expiry Interval the 60 s message arrived with (null: none), "retained": [[message,
interval left], ...] the new subscriber got}.
The standard: an expired message is not delivered; a live one carries what is left.
Usage: message_expiry.py HOST PORT USERNAME PASSWORD TOPIC"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, user, password, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
out = {"got": [], "expiry_left": None, "retained": []}


def connect(subscribe):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="me-sub", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    ready, done = threading.Event(), threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: ready.set()
    c.on_subscribe = lambda cl, u, m, rc, p: done.set()

    def on_message(cl, u, msg):
        out["got"].append(msg.payload.decode())
        if msg.payload == b"long":
            out["expiry_left"] = getattr(msg.properties, "MessageExpiryInterval", None)

    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    c.connect(host, port, keepalive=30, clean_start=False, properties=props)
    c.loop_start()
    ready.wait(5)
    if subscribe:
        c.subscribe(topic, qos=1)
        done.wait(5)
    return c


c = connect(True)
c.disconnect()
c.loop_stop()
pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="me-pub", protocol=mqtt.MQTTv5)
pub.username_pw_set(user, password)
pub.connect(host, port, keepalive=30)
pub.loop_start()
for payload, expiry in [(b"short", 1), (b"long", 60)]:
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = expiry
    pub.publish(topic, payload, qos=1, properties=p).wait_for_publish(5)
pub.disconnect()
pub.loop_stop()
time.sleep(2.5)
c = connect(False)
time.sleep(1.0)
c.disconnect()
c.loop_stop()

pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="me-pub-r", protocol=mqtt.MQTTv5)
pub.username_pw_set(user, password)
pub.connect(host, port, keepalive=30)
pub.loop_start()
for payload, expiry in [(b"r-short", 1), (b"r-long", 60)]:
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = expiry
    pub.publish(topic + "/" + payload.decode(), payload, qos=1, retain=True, properties=p).wait_for_publish(5)
pub.disconnect()
pub.loop_stop()
time.sleep(2.5)
r = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="me-ret", protocol=mqtt.MQTTv5)
r.username_pw_set(user, password)
r.on_message = lambda cl, u, m: out["retained"].append([m.payload.decode(), getattr(m.properties, "MessageExpiryInterval", None)])
r.connect(host, port, keepalive=30)
r.loop_start()
time.sleep(0.5)
r.subscribe(topic + "/#", qos=1)
time.sleep(1.5)
r.disconnect()
r.loop_stop()
print(json.dumps(out))
