"""MQTT 5 No Local, seen by the Eclipse Paho MQTT client (another codebase than ours). A
client subscribes with No Local to a topic and publishes to it; another client publishes
to it too. Prints JSON: {"got": payloads the first client received, in order}.
The standard: a No Local subscription never gets the client's own messages.
Usage: no_local.py HOST PORT USERNAME PASSWORD TOPIC"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

host, port, user, password, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
got = []
ready, subscribed = threading.Event(), threading.Event()

me = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nl-me", protocol=mqtt.MQTTv5)
me.username_pw_set(user, password)
me.on_connect = lambda c, u, f, rc, p: ready.set()
me.on_subscribe = lambda c, u, m, rc, p: subscribed.set()
me.on_message = lambda c, u, msg: got.append(msg.payload.decode())
me.connect(host, port, keepalive=30)
me.loop_start()
if not ready.wait(5):
    print(json.dumps({"error": "no CONNACK"}))
    sys.exit(0)
me.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
subscribed.wait(5)

other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nl-other", protocol=mqtt.MQTTv5)
other.username_pw_set(user, password)
other.connect(host, port, keepalive=30)
other.loop_start()
me.publish(topic, b"mine-1", qos=1).wait_for_publish(5)
other.publish(topic, b"theirs", qos=1).wait_for_publish(5)
me.publish(topic, b"mine-2", qos=0).wait_for_publish(5)
time.sleep(1.5)
for c in (me, other):
    c.disconnect()
    c.loop_stop()
print(json.dumps({"got": got}))
