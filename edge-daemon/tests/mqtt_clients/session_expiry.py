"""MQTT 5 Session Expiry, seen by the Eclipse Paho MQTT client (another codebase than
ours). For each probe a client connects without Clean Start and the given Session Expiry
Interval, subscribes at QoS 1, disconnects; a message is published while it is away; it
waits, then reconnects the same way. Prints JSON, per probe: {"present": the CONNACK's
session present flag on reconnect, "got": messages received after reconnecting}.
Probes: "zero" (interval 0, the MQTT 5 default: the session ends at disconnect),
"minute" (60 s, back at once: resumed), "short" (1 s, back after 2.5 s: gone),
"renewed" (after "short"'s session is gone, the new one is kept: subscribe again, away
briefly, back: resumed with the message), "ended_at_disconnect" (60 s, but the DISCONNECT
sets the interval to 0: gone), "dropped" (60 s, the connection dropped without a
DISCONNECT: resumed with the message).
Usage: session_expiry.py HOST PORT USERNAME PASSWORD TOPIC_PREFIX"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, user, password, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def session(name, expiry, topic, got, flags):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="se-" + name, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    ready = threading.Event()

    def on_connect(client, userdata, f, rc, p):
        flags.append(bool(f.session_present))
        ready.set()

    c.on_connect = on_connect
    c.on_message = lambda cl, u, msg: got.append(msg.payload.decode())
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    c.connect(host, port, keepalive=30, clean_start=False, properties=props)
    c.loop_start()
    ready.wait(5)
    return c


def probe(name, expiry, away, end="disconnect"):
    topic = prefix + name
    got, flags = [], []
    c = session(name, expiry, topic, got, flags)
    done = threading.Event()
    c.on_subscribe = lambda cl, u, m, rc, p: done.set()
    c.subscribe(topic, qos=1)
    done.wait(5)
    if end == "drop":
        c.loop_stop()
        c.socket().close()
        time.sleep(0.3)
    elif end == "zero_at_disconnect":
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        c.disconnect(properties=props)
        c.loop_stop()
    else:
        c.disconnect()
        c.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="se-pub-" + name, protocol=mqtt.MQTTv5)
    pub.username_pw_set(user, password)
    pub.connect(host, port, keepalive=30)
    pub.loop_start()
    pub.publish(topic, b"while-away", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(away)
    got.clear()
    c2 = session(name, expiry, topic, got, flags)
    time.sleep(1.0)
    # A fresh session forgets the subscription; end it so the next run starts clean.
    c2.disconnect()
    c2.loop_stop()
    return {"present": flags[-1] if flags else None, "got": got}


def renewed():
    """After an expired session, the new session (same client id) is kept."""
    name, topic = "renewed", prefix + "renewed"
    got, flags = [], []
    c = session(name, 2, topic, got, flags)
    c.disconnect()
    c.loop_stop()
    time.sleep(3.0)  # the first session expires
    c = session(name, 60, topic, got, flags)
    done = threading.Event()
    c.on_subscribe = lambda cl, u, m, rc, p: done.set()
    c.subscribe(topic, qos=1)
    done.wait(5)
    c.disconnect()
    c.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="se-pub-renewed", protocol=mqtt.MQTTv5)
    pub.username_pw_set(user, password)
    pub.connect(host, port, keepalive=30)
    pub.loop_start()
    pub.publish(topic, b"while-away", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    got.clear()
    c = session(name, 60, topic, got, flags)
    time.sleep(1.0)
    c.disconnect()
    c.loop_stop()
    return {"present": flags, "got": got}


out = {
    "zero": probe("zero", 0, 0.3),
    "minute": probe("minute", 60, 0.3),
    "short": probe("short", 1, 2.5),
    "renewed": renewed(),
    "ended_at_disconnect": probe("ended_at_disconnect", 60, 0.3, "zero_at_disconnect"),
    "dropped": probe("dropped", 60, 0.3, "drop"),
}
print(json.dumps(out))
