"""MQTT 5 Receive Maximum, seen by the Eclipse Paho MQTT client (another codebase than
ours). A subscriber says Receive Maximum 2 and acknowledges nothing until told; a
publisher sends 5 QoS 1 messages to it. Prints JSON:
  {"held": messages received before any acknowledgement,
   "after_acks": messages received after acknowledging those, and so on until all 5,
   "server_receive_maximum": the Receive Maximum the server's CONNACK advertised (null: none)}
Usage: receive_max.py HOST PORT USERNAME PASSWORD TOPIC"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, user, password, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
out = {"held": None, "after_acks": [], "server_receive_maximum": None}
got = []
lock = threading.Lock()
ready = threading.Event()
subscribed = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    out["server_receive_maximum"] = getattr(properties, "ReceiveMaximum", None)
    ready.set()


def on_message(client, userdata, msg):
    with lock:
        got.append(msg.mid)


sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rm-sub", protocol=mqtt.MQTTv5)
sub.username_pw_set(user, password)
sub.manual_ack_set(True)
sub.on_connect = on_connect
sub.on_message = on_message
sub.on_subscribe = lambda c, u, m, rc, p: subscribed.set()
props = Properties(PacketTypes.CONNECT)
props.ReceiveMaximum = 2
sub.connect(host, port, keepalive=30, clean_start=True, properties=props)
sub.loop_start()
if not ready.wait(5):
    print(json.dumps({"error": "no CONNACK"}))
    sys.exit(0)
sub.subscribe(topic, qos=1)
subscribed.wait(5)

pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rm-pub", protocol=mqtt.MQTTv5)
pub.username_pw_set(user, password)
pub.connect(host, port, keepalive=30)
pub.loop_start()
for i in range(5):
    pub.publish(topic, f"m{i}".encode(), qos=1).wait_for_publish(5)

time.sleep(1.5)
with lock:
    out["held"] = len(got)
acked = 0
for _ in range(5):
    with lock:
        pending = got[acked:]
    for mid in pending:
        sub.ack(mid, 1)
    acked += len(pending)
    time.sleep(1.0)
    with lock:
        out["after_acks"].append(len(got))
    if len(got) >= 5:
        break
for c in (sub, pub):
    c.disconnect()
    c.loop_stop()
print(json.dumps(out))
