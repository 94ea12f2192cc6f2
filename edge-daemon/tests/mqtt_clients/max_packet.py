"""MQTT 5 Maximum Packet Size, seen by the Eclipse Paho MQTT client (another codebase than
ours). A subscriber says it takes packets of at most 100 bytes; a publisher sends a small
message, one of 500 bytes, and another small one (QoS 1, 1, 0). Prints JSON:
  {"got": payload names the subscriber received, in order,
   "connected": whether it is still connected afterwards}
The standard: the server discards a message too large for the client, as if it had sent it.
Usage: max_packet.py HOST PORT USERNAME PASSWORD TOPIC"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, user, password, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
got = []
ready, subscribed, closed = threading.Event(), threading.Event(), threading.Event()

sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mp-sub", protocol=mqtt.MQTTv5)
sub.username_pw_set(user, password)
sub.on_connect = lambda c, u, f, rc, p: ready.set()
sub.on_subscribe = lambda c, u, m, rc, p: subscribed.set()
sub.on_disconnect = lambda c, u, f, rc, p: closed.set()
sub.on_message = lambda c, u, msg: got.append(msg.payload[:6].decode(errors="replace").rstrip("x"))
props = Properties(PacketTypes.CONNECT)
props.MaximumPacketSize = 100
sub.reconnect_delay_set(60, 60)
sub.connect(host, port, keepalive=30, properties=props)
sub.loop_start()
if not ready.wait(5):
    print(json.dumps({"error": "no CONNACK"}))
    sys.exit(0)
sub.subscribe(topic, qos=1)
subscribed.wait(5)

pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mp-pub", protocol=mqtt.MQTTv5)
pub.username_pw_set(user, password)
pub.connect(host, port, keepalive=30)
pub.loop_start()
for payload, qos in [(b"small1", 1), (b"big" + b"x" * 497, 1), (b"small2", 0)]:
    pub.publish(topic, payload, qos=qos).wait_for_publish(5)
time.sleep(1.5)
out = {"got": got, "connected": not closed.is_set()}
for c in (sub, pub):
    c.disconnect()
    c.loop_stop()
print(json.dumps(out))
